import Glibc

/// signalfd: the set of signals it reads, and its status flags.
enum SignalFd: FdKind {
    static let name = "signalfd"
    static let type = Img_FdTypes.signalfd

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:[signalfd]" }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        guard let mask = f.info.signalfdMask else {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "fdinfo shows no sigmask")
        }
        var e = Img_SignalfdEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        e.sigmask = mask
        entry.sgfd = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.sgfd
        var mask = e.sigmask
        let fd = try withUnsafeMutablePointer(to: &mask) {
            Int32(try Sys.call(.signalfd4, -1, Int(bitPattern: $0), 8, Int(O_CLOEXEC), context: "signalfd id \(entry.id)"))
        }
        try FileFlags.set(fd, e.flags, what: "signalfd id \(entry.id)")
        return try ctx.install(fd, id: entry.id, what: "signalfd id \(entry.id)")
    }
}
