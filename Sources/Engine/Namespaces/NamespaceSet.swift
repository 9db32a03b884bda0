import Foundation
import Glibc
import Logging

/// The namespaces of a frozen tree, as the dump sees them: cryo's own (the "root" ones, as
/// CRIU calls them, never dumped) and the tree's. A namespace of the tree that is not cryo's
/// is dumped only if its kind can be restored, every task of the tree is in it, and no
/// process outside the tree uses it; otherwise the dump refuses, naming pid and kind.
/// `--external KIND[INODE]:KEY` names one the tree shares on purpose (not dumped).
public struct NamespaceSet: Sendable {
    /// cryo's own namespaces, by kind.
    public var own: [NamespaceKind: UInt64] = [:]
    /// Each task's (pid: host pid of a process of the tree).
    public var perTask: [Int32: [NamespaceKind: UInt64]] = [:]
    /// CRIU's ns ids: one counter across kinds, cryo's own namespaces first.
    public var ids: [NamespaceKind: [UInt64: UInt32]] = [:]
    /// The kinds in which the tree's root lives in a namespace of its own (CRIU's root_ns_mask).
    public var newKinds: [NamespaceKind] = []
    /// New namespaces that are external (named on the command line): kind -> key.
    public var externals: [NamespaceKind: String] = [:]
    public var root: Int32 = 0

    /// The kinds whose contents cryo can rebuild in a new namespace (see docs/NAMESPACES.md).
    public static var restorable: Set<NamespaceKind> { Set(NamespaceContentsKinds.all.map { $0.kind }) }

    public init() {}

    /// Reads every task's namespaces and refuses what cannot be restored (see the type).
    public static func collect(root: Int32, processes: [(pid: Int32, threads: [Int32])], proc: ProcReader,
                               externals: ExternalNamespaces, restorable: Set<NamespaceKind> = NamespaceSet.restorable) throws -> NamespaceSet {
        var set = NamespaceSet()
        set.root = root
        var next: UInt32 = 1
        func id(_ kind: NamespaceKind, _ inode: UInt64) -> UInt32 {
            if let v = set.ids[kind]?[inode] { return v }
            set.ids[kind, default: [:]][inode] = next
            next += 1
            return next - 1
        }
        let me = getpid()
        for k in NamespaceKind.allCases {
            guard let ino = try? proc.namespaceInode(pid: me, kind: k.procName) else { continue }
            set.own[k] = ino
            _ = id(k, ino)
        }
        let members = Set(processes.map(\.pid))
        for p in processes {
            var mine: [NamespaceKind: UInt64] = [:]
            for k in NamespaceKind.allCases where set.own[k] != nil {
                // A zombie has no namespaces left to read: it lives only in its parent's pid ns.
                guard let ino = try? proc.namespaceInode(pid: p.pid, kind: k.procName) else { continue }
                mine[k] = ino
                _ = id(k, ino)
                for t in p.threads where t != p.pid {
                    if let ti = try? proc.namespaceInode(pid: p.pid, tid: t, kind: k.procName), ti != ino {
                        throw NamespaceError.unsupported(pid: t, kind: k.procName, inode: ti, reason: "a thread in another \(k.procName) namespace than its process \(p.pid)")
                    }
                }
            }
            // unshare(CLONE_NEWPID/NEWTIME) without a fork yet: the next child would land elsewhere.
            for (k, link) in [(NamespaceKind.pid, "pid_for_children"), (.time, "time_for_children")] {
                if let now = mine[k], let next = try? proc.namespaceInode(pid: p.pid, kind: link), next != now {
                    throw NamespaceError.unsupported(pid: p.pid, kind: k.procName, inode: next, reason: "unshared for its children (\(link)) but not entered")
                }
            }
            set.perTask[p.pid] = mine
        }
        guard let rootNs = set.perTask[root] else { return set }
        var others: [Int32]?  // processes outside the tree, read once if needed
        for k in NamespaceKind.allCases {
            guard let mine = rootNs[k], let host = set.own[k] else { continue }
            for (pid, ns) in set.perTask.sorted(by: { $0.key < $1.key }) {
                guard let o = ns[k], o != mine else { continue }
                throw NamespaceError.unsupported(pid: pid, kind: k.procName, inode: o,
                    reason: "nested inside the tree (its root \(root) is in \(k.procName):[\(mine)])")
            }
            guard mine != host else { continue }
            if let key = externals.key(k, mine) {
                set.externals[k] = key
                continue
            }
            guard restorable.contains(k) else {
                throw NamespaceError.unsupported(pid: root, kind: k.procName, inode: mine, reason: "cryo cannot dump and restore this kind of namespace yet")
            }
            if others == nil { others = proc.allPids().filter { !members.contains($0) } }
            for o in others! {
                for t in (try? proc.tasks(pid: o)) ?? [o] {
                    if let ino = try? proc.namespaceInode(pid: o, tid: t, kind: k.procName), ino == mine {
                        throw NamespaceError.sharedOutside(pid: root, kind: k.procName, inode: mine, outside: t)
                    }
                }
            }
            set.newKinds.append(k)
        }
        return set
    }

    /// The ns ids of one task, into its kobj ids (pid: a process of the tree).
    public func fill(_ e: inout Img_TaskKobjIdsEntry, pid: Int32) {
        guard let ns = perTask[pid] ?? perTask[root] else { return }
        for (k, ino) in ns { if let v = ids[k]?[ino] { e.setNamespaceID(k, v) } }
    }

    /// cryo's own ns ids, as CRIU's inventory root_ids holds its own.
    public func fillRoot(_ e: inout Img_TaskKobjIdsEntry) {
        for (k, ino) in own { if let v = ids[k]?[ino] { e.setNamespaceID(k, v) } }
    }

    /// CRIU's ns id of the root's namespace of `kind`.
    public func rootID(_ kind: NamespaceKind) -> UInt32? { perTask[root]?[kind].flatMap { ids[kind]?[$0] } }
}

extension Img_TaskKobjIdsEntry {
    public mutating func setNamespaceID(_ k: NamespaceKind, _ v: UInt32) {
        switch k {
        case .pid: pidNsID = v
        case .net: netNsID = v
        case .ipc: ipcNsID = v
        case .uts: utsNsID = v
        case .mnt: mntNsID = v
        case .user: userNsID = v
        case .cgroup: cgroupNsID = v
        case .time: timeNsID = v
        }
    }

    public func namespaceID(_ k: NamespaceKind) -> UInt32? {
        switch k {
        case .pid: return hasPidNsID ? pidNsID : nil
        case .net: return hasNetNsID ? netNsID : nil
        case .ipc: return hasIpcNsID ? ipcNsID : nil
        case .uts: return hasUtsNsID ? utsNsID : nil
        case .mnt: return hasMntNsID ? mntNsID : nil
        case .user: return hasUserNsID ? userNsID : nil
        case .cgroup: return hasCgroupNsID ? cgroupNsID : nil
        case .time: return hasTimeNsID ? timeNsID : nil
        }
    }

    /// The kinds whose id differs from `root`'s (the dumper's): CRIU's root_ns_mask at restore.
    public func newNamespaces(comparedTo root: Img_TaskKobjIdsEntry) -> [NamespaceKind] {
        NamespaceKind.allCases.filter { k in
            guard let mine = namespaceID(k), let theirs = root.namespaceID(k) else { return false }
            return mine != theirs
        }
    }
}

extension NamespaceSet {
    /// Writes the images of every new namespace of the tree (external ones are not dumped).
    func dumpContents(images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        for k in newKinds {
            guard let kind = NamespaceContentsKinds.of(k), let id = rootID(k) else {
                throw NamespaceError.unsupported(pid: root, kind: k.procName, inode: perTask[root]?[k] ?? 0, reason: "cryo cannot dump its contents")
            }
            try kind.dump(id: id, pid: root, images: images, proc: proc, externals: externals)
        }
    }

    /// What the tree's new namespaces hold until the dump ends (the network lock). On a
    /// failure halfway, what was taken is released (the tree runs on).
    func hold(request: DumpRequest) throws -> NamespaceHolds {
        let holds = NamespaceHolds()
        do {
            for k in newKinds {
                guard let kind = NamespaceContentsKinds.of(k), let id = rootID(k),
                      let h = try kind.hold(id: id, pid: root, request: request) else { continue }
                holds.holds.append((k, h))
            }
        } catch {
            try? holds.release(treeRuns: true)
            throw error
        }
        return holds
    }
}
