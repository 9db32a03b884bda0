import CKernel
import Foundation
import Glibc

/// A pty slave hung up by the close of its master (CRIU's pty04): the kernel gave its open
/// files the hung-up operations (reads give 0, writes and ioctls EIO, poll HUP) and took
/// /dev/pts/N away. Restore makes a pty with the same index, opens the tree's slaves on it,
/// and closes the master, which hangs them up the same way.
enum TtyHangup {
    /// A hung-up tty answers every termios ioctl with EIO.
    static func isHungUp(_ c: Int32) -> Bool {
        var t = [UInt8](repeating: 0, count: 64)
        return ck_ioctl(c, TtyIoctl.getTermios2, &t) != 0 && errno == EIO
    }

    static func dump(_ f: OpenFd, id: UInt32, index: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        var info = Tty.bareInfo(.pty, index: index, of: f, ctx: ctx)
        info.hungUp = true
        ctx.ttys.infos.append(info)
        var e = Img_TtyFileEntry()
        e.id = id
        e.ttyInfoID = info.id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        entry.tty = e
    }

    /// Every hung-up slave of the images, made before any live pty: a hung-up slave's index
    /// was free once its master closed, and a live pty of the tree may hold it now. Each pty
    /// gets its index, all its descriptions are opened, and the master's close hangs them up
    /// and frees the index again.
    static func makeAll(ctx: FileRestoreContext) throws {
        let ptys = ctx.shared.ptys
        guard !ptys.hangupsMade else { return }
        ptys.hangupsMade = true
        let infos = try ptys.infos(ctx.images)
        let slaves = ctx.files.values.filter { $0.hasTty && infos[$0.tty.ttyInfoID]?.hungUp == true }
        for (index, files) in Dictionary(grouping: slaves, by: { infos[$0.tty.ttyInfoID]!.pty.index }).sorted(by: { $0.key < $1.key }) {
            let path = "/dev/pts/\(index)"
            func fail(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: files[0].id, what: "hung-up pty slave \(path)", reason: r) }
            let m = try RestoredPtys.openPtmx("/dev/ptmx", index: index, fail: fail)
            defer { close(m) }
            var zero: Int32 = 0
            guard ck_ioctl(m, TtyIoctl.setPtlck, &zero) == 0 else { throw fail("TIOCSPTLCK: \(String(cString: strerror(errno)))") }
            for f in files.sorted(by: { $0.id < $1.id }) {
                let fd = open(path, Int32(bitPattern: f.tty.flags) & O_ACCMODE | O_NOCTTY | O_CLOEXEC)
                guard fd >= 0 else { throw fail("open \(path): \(String(cString: strerror(errno)))") }
                ctx.objects[f.id] = fd
                try FileFlags.set(fd, f.tty.flags, what: path)
            }
        }
    }

    static func restore(_ entry: Img_FileEntry, info: Img_TtyInfoEntry, ctx: FileRestoreContext) throws -> Int32 {
        try makeAll(ctx: ctx)
        guard let fd = ctx.objects[entry.id] else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: "hung-up pty slave /dev/pts/\(info.pty.index)", reason: "not made")
        }
        return try ctx.install(fd, id: entry.id, what: "/dev/pts/\(info.pty.index) (hung up)")
    }
}
