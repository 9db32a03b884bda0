import CKernel
import Glibc

/// eventfd: its counter, EFD_SEMAPHORE and status flags. The counter is written into a fresh
/// eventfd in cryo (eventfd2 takes only 32 bits of it), which then travels to the task.
enum EventFd: FdKind {
    static let name = "eventfd"
    static let type = Img_FdTypes.eventfd
    /// CRIU keeps only file flags in EventfdFileEntry.flags; cryo also records EFD_SEMAPHORE
    /// there, in bit 0, which file flags never use for an eventfd (it is always O_RDWR).
    static let semaphoreBit: UInt32 = 1

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:[eventfd]" }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        guard let count = f.info.eventfdCount else {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "fdinfo shows no eventfd-count")
        }
        var e = Img_EventfdFileEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC) & ~semaphoreBit
        if f.info.eventfdSemaphore == true { e.flags |= semaphoreBit }
        e.fown = FdKinds.noOwner
        e.counter = count
        entry.efd = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.efd
        let sem = e.flags & semaphoreBit != 0
        // EFD_SEMAPHORE is 1; EFD_CLOEXEC is O_CLOEXEC.
        let fd = eventfd(0, (sem ? 1 : 0) | O_CLOEXEC)
        guard fd >= 0 else { throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: name, reason: "eventfd: \(String(cString: strerror(errno)))") }
        if e.counter > 0 {
            var c = e.counter
            guard write(fd, &c, 8) == 8 else {
                let err = errno; close(fd)
                throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: name, reason: "set counter \(e.counter): \(String(cString: strerror(err)))")
            }
        }
        try FileFlags.set(fd, e.flags & ~semaphoreBit, what: "eventfd id \(entry.id)")
        return try ctx.install(fd, id: entry.id, what: "eventfd id \(entry.id)")
    }
}
