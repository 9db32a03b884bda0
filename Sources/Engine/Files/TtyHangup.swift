import CKernel
import Foundation
import Glibc

/// A pty slave hung up by the close of its master (CRIU's pty04): the kernel gave its open
/// files the hung-up operations (reads give 0, writes and ioctls EIO, poll HUP) and took
/// /dev/pts/N away. Restore makes a pty with the same index, opens the tree's slaves on it,
/// and closes the master once they are all open, which hangs them up the same way.
enum TtyHangup {
    /// A hung-up tty answers every termios ioctl with EIO.
    static func isHungUp(_ c: Int32) -> Bool {
        var t = [UInt8](repeating: 0, count: 64)
        return ck_ioctl(c, TtyIoctl.getTermios2, &t) != 0 && errno == EIO
    }

    static func dump(_ f: OpenFd, id: UInt32, index: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        var info = Img_TtyInfoEntry()
        info.id = ctx.ttys.nextInfoID()
        info.type = .pty
        info.locked = false; info.exclusive = false; info.packetMode = false
        info.sid = 0; info.pgrp = 0
        info.rdev = TtyDumpState.encode(UInt64(f.stat.st_rdev))
        info.hungUp = true
        var pty = Img_TtyPtyEntry()
        pty.index = index
        info.pty = pty
        ctx.ttys.infos.append(info)
        var e = Img_TtyFileEntry()
        e.id = id
        e.ttyInfoID = info.id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        entry.tty = e
    }

    static func restore(_ entry: Img_FileEntry, info: Img_TtyInfoEntry, ctx: FileRestoreContext) throws -> Int32 {
        func fail(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: entry.id, what: "hung-up pty slave /dev/pts/\(info.pty.index)", reason: r) }
        let index = info.pty.index
        let path = "/dev/pts/\(index)"
        if ctx.shared.ptys.hangups[index] == nil {
            let m = try RestoredPtys.openPtmx("/dev/ptmx", index: index, fail: fail)
            var zero: Int32 = 0
            guard ck_ioctl(m, TtyIoctl.setPtlck, &zero) == 0 else { close(m); throw fail("TIOCSPTLCK: \(String(cString: strerror(errno)))") }
            ctx.shared.ptys.hangups[index] = m
            ctx.keepers.append(m)  // closed with the rest if the restore fails first
        }
        let fd = open(path, Int32(bitPattern: entry.tty.flags) & O_ACCMODE | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open \(path): \(String(cString: strerror(errno)))") }
        do { try FileFlags.set(fd, entry.tty.flags, what: path) } catch { close(fd); throw error }
        return try ctx.install(fd, id: entry.id, what: path)
    }
}
