import Foundation
import Glibc

/// The tree's attachments of SysV shm segments ("/SYSVkkkkkkkk" in maps, the inode being the
/// segment's id). The VMA names the segment by id (CRIU's VMA_AREA_SYSVIPC, shmid); its bytes
/// are the segment's, dumped with the IPC namespace (or, for one the tree does not own, by
/// HostSysVShm), never with the process's pages.
final class SysVShmAttachments: @unchecked Sendable {
    struct Attachment { var id: UInt64; var pid: Int32; var start: UInt64 }
    private(set) var all: [Attachment] = []
    private let lock = NSLock()

    static func isSysV(_ m: ProcMapping) -> Bool { m.shared && m.path.hasPrefix("/SYSV") }

    /// Notes one VMA of an attachment; returns the segment's id. An attachment split by
    /// mprotect is several VMAs, in order, each going on where the last ended; one that lost a
    /// piece (munmap, mremap) is refused: shmat gives back only whole segments.
    func note(_ m: ProcMapping, pid: Int32) throws -> UInt64 {
        var st = stat()
        let link = "/proc/\(pid)/map_files/\(String(m.start, radix: 16))-\(String(m.end, radix: 16))"
        guard stat(link, &st) == 0 else {
            throw DumpError.unsupported(pid: pid, what: "SysV shm id \(m.inode) attached at 0x\(String(m.start, radix: 16)): stat \(link): \(String(cString: strerror(errno)))")
        }
        let whole = (UInt64(st.st_size) + 4095) & ~4095
        lock.lock(); defer { lock.unlock() }
        if m.offset == 0 {
            try complete(pid)
            open[pid] = Open(id: m.inode, start: m.start, end: m.end, whole: whole)
            all.append(Attachment(id: m.inode, pid: pid, start: m.start))
        } else if var o = open[pid], o.id == m.inode, o.end == m.start, m.start - o.start == m.offset {
            o.end = m.end
            open[pid] = o
        } else {
            throw DumpError.unsupported(pid: pid, what: "SysV shm id \(m.inode) attached at 0x\(String(m.start, radix: 16)) from offset \(m.offset) of its segment (a part only)")
        }
        return m.inode
    }

    private struct Open { var id: UInt64; var start: UInt64; var end: UInt64; var whole: UInt64 }
    private var open: [Int32: Open] = [:]

    private func complete(_ pid: Int32) throws {
        guard let o = open.removeValue(forKey: pid), o.end - o.start != o.whole else { return }
        throw DumpError.unsupported(pid: pid, what: "SysV shm id \(o.id) attached at 0x\(String(o.start, radix: 16)) in \(o.end - o.start) of its \(o.whole) bytes (a part only)")
    }

    /// Every attachment is whole (called once every process's VMAs are noted).
    func verify() throws {
        lock.lock(); defer { lock.unlock() }
        for pid in Array(open.keys) { try complete(pid) }
    }
}
