import Glibc

/// An fd of a namespace (opened from /proc/PID/ns/KIND, or kept by setns users): CRIU's
/// ns_file_entry, naming the namespace by CRIU's ns id. One of cryo's own namespaces (the
/// host's) or of the tree's own is opened again from cryo's or the restored task's /proc;
/// any other namespace is refused, since nothing would bring it back.
enum NsFile: FdKind {
    static let name = "namespace"
    static let type = Img_FdTypes.ns

    /// "net:[4026531833]" -> (net, 4026531833)
    static func parse(_ target: String) -> (NamespaceKind, UInt64)? {
        guard target.hasSuffix("]"), let open = target.firstIndex(of: ":"),
              target[target.index(after: open)...].hasPrefix("["),
              let kind = NamespaceKind(rawValue: String(target[..<open])),
              let ino = UInt64(target[target.index(open, offsetBy: 2)..<target.index(before: target.endIndex)]) else { return nil }
        return (kind, ino)
    }

    static func claims(_ f: OpenFd) -> Bool { parse(f.target) != nil && f.stat.st_mode & S_IFMT == S_IFREG }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        let (kind, ino) = parse(f.target)!
        guard let nsID = ctx.namespaceIDs[kind]?[ino] else {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target,
                                    reason: "an fd of a \(kind.rawValue) namespace that is neither cryo's own nor the tree's, which nothing would bring back")
        }
        if ctx.hostNamespaces[kind] == ino, let own = ctx.treeNamespaces[kind], own != ino {
            // Restore rebuilds the tree's own namespace of this kind from cryo, whose
            // threads may then be inside it: the host's could not be told apart there.
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target,
                                    reason: "an fd of the host's \(kind.rawValue) namespace in a tree with a \(kind.rawValue) namespace of its own, which cryo cannot give back yet")
        }
        var e = Img_NsFileEntry()
        e.id = id
        e.nsID = nsID
        e.nsCflag = UInt32(kind.cloneFlag)
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        entry.nsf = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.nsf
        let what = "namespace fd id \(entry.id)"
        guard let kind = NamespaceKind.allCases.first(where: { UInt32($0.cloneFlag) == e.nsCflag }) else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "unknown namespace flag 0x\(String(e.nsCflag, radix: 16))")
        }
        let inventory = try ctx.images.readOne(.inventory, as: Img_InventoryEntry.self)
        let host = inventory.rootIds.namespaceID(kind) == e.nsID
        let tree = try ctx.images.readOne(.ids, id: Int(ctx.task.vpid), as: Img_TaskKobjIdsEntry.self).namespaceID(kind) == e.nsID
        let path: String
        if tree {
            path = "/proc/\(ctx.task.pid)/ns/\(kind.rawValue)"
        } else if host {
            // The tree has no namespace of this kind of its own (dump refuses the fd otherwise),
            // so cryo is in the one the fd names.
            path = "/proc/thread-self/ns/\(kind.rawValue)"
        } else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what,
                                    reason: "\(kind.rawValue) namespace id \(e.nsID) is neither cryo's own nor the task's, so it is not restored")
        }
        let fd = open(path, Int32(bitPattern: e.flags) & O_ACCMODE | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, context: "\(path) (\(what))") }
        return try ctx.install(fd, id: entry.id, what: what)
    }
}
