import Foundation
import Glibc

/// The cgroups of a tree, for cgroup.img (CRIU's format): one set per distinct membership,
/// and per hierarchy the directories the sets name with the properties of the ones tasks are
/// in. cryo's own cgroups are left out: restore neither creates nor changes them.
/// A process in a cgroup namespace of its own carries the namespace's root per hierarchy as
/// CRIU's cgns_prefix (the length of the path's part above the root).
public final class CgroupCollector {
    let proc: ProcReader
    let mounts: [String: String]
    let own: [ProcCgroup]
    let ownNamespace: UInt64?
    /// One membership and where its cgroup namespace's root cuts its path (0: cryo's root).
    struct Member: Equatable {
        var cg: ProcCgroup
        var prefix: Int = 0
    }
    private var sets: [[Member]] = []
    /// Per cgroup namespace of the tree (by inode): hierarchy -> prefix length.
    private var prefixes: [UInt64: [Int: Int]] = [:]
    /// The set id of cryo itself (inventory's root_cg_set).
    public private(set) var rootSet: UInt32 = 0

    public init(proc: ProcReader) throws {
        self.proc = proc
        mounts = try proc.cgroupMounts(pid: getpid())
        own = try proc.cgroups(pid: getpid())
        ownNamespace = try? proc.namespaceInode(pid: getpid(), kind: NamespaceKind.cgroup.procName)
        rootSet = setID(own.map { Member(cg: $0) })
    }

    private func setID(_ members: [Member]) -> UInt32 {
        let s = members.sorted { $0.cg.hierarchy < $1.cg.hierarchy }
        if let i = sets.firstIndex(of: s) { return UInt32(i + 1) }
        sets.append(s)
        return UInt32(sets.count)
    }

    /// The set id of a process. Its threads must be in its cgroups, and every hierarchy it
    /// is in must be mounted where cryo can see it.
    public func add(pid: Int32, threads: [Int32]) throws -> UInt32 {
        let mine = try proc.cgroups(pid: pid)
        for tid in threads where tid != pid {
            let theirs = try proc.taskCgroups(pid: pid, tid: tid)
            if theirs != mine, let d = theirs.first(where: { !mine.contains($0) }) {
                throw SecurityError.cgroup(pid: pid, what: "\(d.controllers):\(d.path) of tid \(tid)",
                                           reason: "is not its process's; cryo restores one set of cgroups per process")
            }
        }
        for c in mine where mounts[c.controllers] == nil && !own.contains(c) {
            throw SecurityError.cgroup(pid: pid, what: "\(c.controllers.isEmpty ? "(v2)" : c.controllers):\(c.path)",
                                       reason: "its hierarchy is not mounted where cryo can see it")
        }
        guard let ns = try? proc.namespaceInode(pid: pid, kind: NamespaceKind.cgroup.procName), ns != ownNamespace else {
            return setID(mine.map { Member(cg: $0) })
        }
        if prefixes[ns] == nil { prefixes[ns] = try namespaceRoots(pid: pid, outside: mine) }
        return setID(mine.map { Member(cg: $0, prefix: prefixes[ns]![$0.hierarchy] ?? 0) })
    }

    /// The root of `pid`'s cgroup namespace in each hierarchy: its path as cryo sees it, less
    /// the path seen from inside (read by a thread of cryo's that joined the namespace).
    private func namespaceRoots(pid: Int32, outside: [ProcCgroup]) throws -> [Int: Int] {
        let inside = try NamespaceThread.run(in: [.cgroup], of: pid) { try ProcReader().cgroups(pid: pid) }
        var out: [Int: Int] = [:]
        for o in outside {
            guard let i = inside.first(where: { $0.hierarchy == o.hierarchy }) else { continue }
            let what = "\(o.controllers.isEmpty ? "(v2)" : o.controllers):\(o.path)"
            guard !i.path.hasPrefix("/..") else {
                throw SecurityError.cgroup(pid: pid, what: what, reason: "lies outside the root of its cgroup namespace (seen inside as \(i.path)), which a restore cannot make again")
            }
            guard i.path == "/" || o.path.hasSuffix(i.path) else {
                throw SecurityError.cgroup(pid: pid, what: what, reason: "is seen inside its cgroup namespace as \(i.path), not a tail of its path")
            }
            // CRIU writes no prefix where the paths are equal (the root is cryo's "/").
            out[o.hierarchy] = i.path == o.path ? 0 : o.path.utf8.count - (i.path == "/" ? 0 : i.path.utf8.count)
        }
        return out
    }

    public func entry() throws -> Img_CgroupEntry {
        var e = Img_CgroupEntry()
        var taskDirs: [String: Set<String>] = [:]  // hierarchy name -> paths tasks are in
        for (i, s) in sets.enumerated() {
            var cs = Img_CgSetEntry()
            cs.id = UInt32(i + 1)
            for member in s {
                let m = member.cg
                var c = Img_CgMemberEntry()
                c.name = m.controllers
                c.path = m.path
                if member.prefix > 0 { c.cgnsPrefix = UInt32(member.prefix) }
                cs.ctls.append(c)
                if !own.contains(m) && m.path != "/" { taskDirs[m.controllers, default: []].insert(m.path) }
            }
            e.sets.append(cs)
        }
        for (name, paths) in taskDirs.sorted(by: { $0.key < $1.key }) {
            guard let mount = mounts[name] else { continue }
            var ctl = Img_CgControllerEntry()
            ctl.cnames = name.isEmpty ? [""] : name.split(separator: ",").map(String.init)
            ctl.dirs = try dirs(under: "", mount: mount, controllers: name, paths: paths)
            e.controllers.append(ctl)
        }
        return e
    }

    /// The directory tree below `prefix` that leads to `paths`; properties where tasks are.
    private func dirs(under prefix: String, mount: String, controllers: String, paths: Set<String>) throws -> [Img_CgroupDirEntry] {
        let depth = prefix.split(separator: "/").count
        let names = Set(paths.filter { $0.hasPrefix(prefix + "/") }.compactMap { p -> String? in
            let comps = p.split(separator: "/")
            return comps.count > depth ? String(comps[depth]) : nil
        })
        var out: [Img_CgroupDirEntry] = []
        for n in names.sorted() {
            let path = prefix + "/" + n
            var d = Img_CgroupDirEntry()
            d.dirName = n
            var st = stat()
            if stat(mount + path, &st) == 0 {
                var perms = Img_CgroupPerms()
                perms.mode = UInt32(st.st_mode & 0o7777); perms.uid = st.st_uid; perms.gid = st.st_gid
                d.dirPerms = perms
            }
            if paths.contains(path) {
                for prop in CgroupProperties.names(for: controllers) {
                    guard let v = try? ProcReader().readText(mount + path + "/" + prop) else { continue }
                    var pe = Img_CgroupPropEntry()
                    pe.name = prop
                    pe.value = v.trimmingCharacters(in: .whitespacesAndNewlines)
                    d.properties.append(pe)
                }
            }
            d.children = try dirs(under: path, mount: mount, controllers: controllers, paths: paths)
            out.append(d)
        }
        return out
    }
}
