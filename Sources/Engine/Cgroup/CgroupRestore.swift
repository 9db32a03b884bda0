import Foundation
import Glibc

/// Puts restored processes back into the cgroups of cgroup.img, creating and configuring
/// them as the --manage-cgroups mode says. Everything checked before a task is made; the
/// directories it made are removed again if the restore fails.
public final class CgroupRestore: @unchecked Sendable {
    let mode: CgroupMode
    let entry: Img_CgroupEntry
    let mounts: [String: String]
    let file: String
    private(set) var created: [String] = []

    /// nil when there is nothing to do: mode ignore, or images without cgroup.img.
    public init?(images: ImageDirectory, mode: CgroupMode) throws {
        guard mode != .ignore, images.exists(.cgroup) else { return nil }
        self.mode = mode
        file = images.filePath(.cgroup)
        entry = try images.readOne(.cgroup, as: Img_CgroupEntry.self)
        mounts = try ProcReader().cgroupMounts(pid: getpid())
        try validate()
    }

    private func bad(_ why: String) -> ImageError { .inconsistent(file: file, offset: 0, reason: why) }

    /// Paths come from the images: no "..", nothing that leaves its hierarchy.
    private func validate() throws {
        func safe(_ c: Substring) -> Bool { !c.isEmpty && c != "." && c != ".." && !c.contains("\0") }
        var ids: Set<UInt32> = []
        for s in entry.sets {
            guard ids.insert(s.id).inserted, s.id != 0 else { throw bad("cgroup set id \(s.id) repeated or 0") }
            for m in s.ctls {
                guard m.path.hasPrefix("/"), m.path.split(separator: "/").allSatisfy(safe) else { throw bad("cgroup path '\(m.path)'") }
            }
        }
        func check(_ d: Img_CgroupDirEntry) throws {
            guard safe(Substring(d.dirName)), !d.dirName.contains("/") else { throw bad("cgroup directory name '\(d.dirName)'") }
            for p in d.properties where p.name.contains("/") || !CgroupProperties.names(for: "").contains(p.name) && !CgroupProperties.v1.values.joined().contains(p.name) {
                throw bad("cgroup property '\(p.name)', which cryo does not write")
            }
            for c in d.children { try check(c) }
        }
        for c in entry.controllers { for d in c.dirs { try check(d) } }
    }

    private func mount(_ name: String) throws -> String {
        guard let m = mounts[name] else {
            throw SecurityError.cgroup(pid: nil, what: "hierarchy '\(name.isEmpty ? "(v2)" : name)'", reason: "is in the images but not mounted here")
        }
        return m
    }

    /// Every directory of the images exists afterwards, with its properties as the mode says.
    public func prepare() throws {
        for ctl in entry.controllers {
            let name = ctl.cnames.joined(separator: ",")
            let root = try mount(name)
            for d in ctl.dirs { try prepare(d, parent: root, controllers: name) }
        }
    }

    private func prepare(_ d: Img_CgroupDirEntry, parent: String, controllers: String) throws {
        let path = parent + "/" + d.dirName
        var st = stat()
        let exists = stat(path, &st) == 0
        if !exists {
            guard mode.createsMissing else {
                throw SecurityError.cgroup(pid: nil, what: path, reason: "does not exist (--manage-cgroups=\(mode.rawValue) creates none)")
            }
            guard mkdir(path, d.hasDirPerms ? mode_t(d.dirPerms.mode) : 0o755) == 0 else {
                throw SecurityError.cgroup(pid: nil, what: path, reason: "mkdir: \(String(cString: strerror(errno)))")
            }
            created.append(path)
            if d.hasDirPerms {
                chmod(path, mode_t(d.dirPerms.mode))
                if chown(path, d.dirPerms.uid, d.dirPerms.gid) != 0 {
                    throw SecurityError.cgroup(pid: nil, what: path, reason: "chown \(d.dirPerms.uid):\(d.dirPerms.gid): \(String(cString: strerror(errno)))")
                }
            }
            // A new v1 cpuset takes no task until it has cpus and mems: its parent's.
            if controllers.split(separator: ",").contains("cpuset") {
                for f in ["cpuset.cpus", "cpuset.mems"] where !d.properties.contains(where: { $0.name == f }) {
                    if let v = try? ProcReader().readText(parent + "/" + f) { try write(path, f, v.trimmingCharacters(in: .whitespacesAndNewlines)) }
                }
            }
        } else if mode == .strict && !d.properties.isEmpty {
            throw SecurityError.cgroup(pid: nil, what: path, reason: "exists already (--manage-cgroups=strict restores only into new cgroups)")
        }
        let setProps = mode == .full || mode == .strict || mode == .props || (mode == .soft && !exists)
        if setProps { for p in d.properties { try write(path, p.name, p.value) } }
        for c in d.children { try prepare(c, parent: path, controllers: controllers) }
    }

    /// Writes one property and reads it back: a limit the kernel took otherwise fails.
    private func write(_ dir: String, _ name: String, _ value: String) throws {
        let file = dir + "/" + name
        let proc = ProcReader()
        func current() -> String? { (try? proc.readText(file))?.trimmingCharacters(in: .whitespacesAndNewlines) }
        if current() == value { return }
        do { try proc.write(value, to: file) } catch {
            throw SecurityError.cgroup(pid: nil, what: dir, reason: "\(name) = \(value): \(error)")
        }
        let got = current() ?? "(unreadable)"
        guard got == value else { throw SecurityError.cgroup(pid: nil, what: dir, reason: "\(name) is '\(got)' after writing '\(value)'") }
    }

    /// Moves a new process (all its threads) into its set's cgroups, then checks it is there.
    public func place(pid: Int32, set id: UInt32) throws {
        guard id != 0 else { return }
        guard let s = entry.sets.first(where: { $0.id == id }) else { throw bad("pid \(pid): cgroup set \(id) is not in the image") }
        let proc = ProcReader()
        let now = try proc.cgroups(pid: pid)
        for m in s.ctls where !now.contains(where: { $0.controllers == m.name && $0.path == m.path }) {
            let dir = try mount(m.name) + m.path
            do { try proc.write("\(pid)", to: dir + "/cgroup.procs") } catch {
                throw SecurityError.cgroup(pid: pid, what: "\(m.name):\(m.path)", reason: "joining it: \(error)")
            }
        }
        let after = try proc.cgroups(pid: pid)
        for m in s.ctls where !after.contains(where: { $0.controllers == m.name && $0.path == m.path }) {
            throw SecurityError.cgroup(pid: pid, what: "\(m.name):\(m.path)", reason: "the process is not in it after joining")
        }
    }

    /// A new cgroup namespace for `pid` rooted where set `id`'s was (CRIU's prepare_cgns):
    /// unshare pins the root at the caller's cgroups, so the process goes to each hierarchy's
    /// root (the path cut at cgns_prefix, "/" without one), unshares, then into its own.
    public func enterNamespace(pid: Int32, set id: UInt32, unshare: () throws -> Void) throws {
        guard let s = entry.sets.first(where: { $0.id == id }) else { throw bad("pid \(pid): cgroup set \(id) is not in the image") }
        let proc = ProcReader()
        let now = try proc.cgroups(pid: pid)
        for m in s.ctls {
            let cut = Int(m.cgnsPrefix)
            guard cut <= m.path.utf8.count else { throw bad("cgns_prefix \(cut) of '\(m.path)' is past its end") }
            let root = cut == 0 ? "/" : String(decoding: m.path.utf8.prefix(cut), as: UTF8.self)
            guard !now.contains(where: { $0.controllers == m.name && $0.path == root }) else { continue }
            let dir = try mount(m.name) + (root == "/" ? "" : root)
            do { try proc.write("\(pid)", to: dir + "/cgroup.procs") } catch {
                throw SecurityError.cgroup(pid: pid, what: "\(m.name):\(root)", reason: "joining the root of its cgroup namespace: \(error)")
            }
        }
        try unshare()
        try place(pid: pid, set: id)
    }

    /// CRIU's --cgroup-root [CONTROLLER:]PATH (runc sends the container's own paths): taken
    /// when the images' tree already lives at or below PATH for that controller (no controller:
    /// every one not named); moving a tree to another root is refused, naming the controller.
    public func checkRoots(_ roots: [String], sets used: Set<UInt32>) throws {
        var byCtl: [String: String] = [:]
        for r in roots {
            guard let colon = r.firstIndex(of: ":") else { byCtl[""] = r; continue }
            byCtl[String(r[..<colon])] = String(r[r.index(after: colon)...])
        }
        for s in entry.sets where used.contains(s.id) {
            for m in s.ctls {
                let names = m.name.split(separator: ",").map(String.init)
                guard let root = names.compactMap({ byCtl[$0] }).first ?? byCtl[m.name] ?? byCtl[""] else { continue }
                guard root == "/" || m.path == root || m.path.hasPrefix(root + "/") else {
                    throw SecurityError.cgroup(pid: nil, what: "\(m.name):\(m.path)", reason: "--cgroup-root \(root) would move the tree to another cgroup root, which cryo does not do")
                }
            }
        }
    }

    /// After a failed restore: the directories this restore made go again (their tasks were
    /// killed; a dying task may hold one for a moment).
    public func undo() {
        for path in created.reversed() {
            for _ in 0..<100 where rmdir(path) != 0 && errno == EBUSY { usleep(10_000) }
        }
        created = []
    }
}
