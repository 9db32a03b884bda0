import Foundation
import Glibc

/// The cgroups of a tree, for cgroup.img (CRIU's format): one set per distinct membership,
/// and per hierarchy the directories the sets name with the properties of the ones tasks are
/// in. cryo's own cgroups are left out: restore neither creates nor changes them.
public final class CgroupCollector {
    let proc: ProcReader
    let mounts: [String: String]
    let own: [ProcCgroup]
    private var sets: [[ProcCgroup]] = []
    /// The set id of cryo itself (inventory's root_cg_set).
    public private(set) var rootSet: UInt32 = 0

    public init(proc: ProcReader) throws {
        self.proc = proc
        mounts = try proc.cgroupMounts(pid: getpid())
        own = try proc.cgroups(pid: getpid())
        rootSet = setID(own)
    }

    private func setID(_ members: [ProcCgroup]) -> UInt32 {
        let s = members.sorted { $0.hierarchy < $1.hierarchy }
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
        return setID(mine)
    }

    public func entry() throws -> Img_CgroupEntry {
        var e = Img_CgroupEntry()
        var taskDirs: [String: Set<String>] = [:]  // hierarchy name -> paths tasks are in
        for (i, s) in sets.enumerated() {
            var cs = Img_CgSetEntry()
            cs.id = UInt32(i + 1)
            for m in s {
                var c = Img_CgMemberEntry()
                c.name = m.controllers
                c.path = m.path
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
