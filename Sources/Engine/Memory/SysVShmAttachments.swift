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

    /// Notes one attachment; returns the segment's id. A segment attached in part (mremap,
    /// munmap of a piece) is refused: shmat gives back only whole segments.
    func note(_ m: ProcMapping, pid: Int32) throws -> UInt64 {
        let where_ = "SysV shm id \(m.inode) (\(m.path)) attached at 0x\(String(m.start, radix: 16))"
        var st = stat()
        let link = "/proc/\(pid)/map_files/\(String(m.start, radix: 16))-\(String(m.end, radix: 16))"
        guard stat(link, &st) == 0 else {
            throw DumpError.unsupported(pid: pid, what: "\(where_): stat \(link): \(String(cString: strerror(errno)))")
        }
        let whole = (UInt64(st.st_size) + 4095) & ~4095
        guard m.offset == 0, m.size == whole else {
            throw DumpError.unsupported(pid: pid, what: "\(where_), \(m.size) bytes from offset \(m.offset) of a \(st.st_size)-byte segment (a part only)")
        }
        lock.lock(); defer { lock.unlock() }
        all.append(Attachment(id: m.inode, pid: pid, start: m.start))
        return m.inode
    }
}
