import Foundation
import Glibc

/// What container runtimes ask of a dump beyond the tree itself (CRIU's --freeze-cgroup and
/// --empty-ns): checked on the frozen tree, refused by name when cryo cannot honour it.
enum RuntimeChecks {
    static func dump(_ request: DumpRequest, tree: FrozenTree) throws {
        try check(freezeCgroup: request.freezeCgroup, emptyNamespaces: request.emptyNamespaces, tree: tree)
    }

    static func check(freezeCgroup cg: String?, emptyNamespaces: Int32, tree: FrozenTree) throws {
        if let cg { try freezeCgroup(cg, tree: tree) }
        if emptyNamespaces & ~Int32(CloneFlag.newnet) != 0 {
            throw DumpError.unsupported(pid: tree.root, what: "--empty-ns for namespaces other than net (mask \(String(emptyNamespaces, radix: 16)))")
        }
    }

    /// cryo freezes with ptrace, not with the cgroup freezer, so a task of the cgroup outside
    /// the tree would run on while the tree is dumped: refused, as a half-frozen container.
    static func freezeCgroup(_ path: String, tree: FrozenTree) throws {
        let procs = ["cgroup.procs", "tasks"].map { path + "/" + $0 }.first { access($0, R_OK) == 0 }
        guard let procs, let text = try? ProcReader().readText(procs) else {
            throw DumpError.unsupported(pid: tree.root, what: "freeze cgroup \(path) (no readable cgroup.procs)")
        }
        let inTree = Set(tree.processes.map(\.pid))
        for line in text.split(separator: "\n") {
            guard let pid = Int32(line), !inTree.contains(pid) else { continue }
            throw DumpError.unsupported(pid: pid, what: "a process of the freeze cgroup \(path) outside the tree of \(tree.root)")
        }
    }

    static func ownNetworkNamespace(_ pid: Int32) -> Bool {
        let proc = ProcReader()
        guard let theirs = try? proc.namespaceInode(pid: pid, kind: "net"),
              let ours = try? proc.namespaceInode(pid: getpid(), kind: "net") else { return false }
        return theirs != ours
    }
}
