import Foundation
import Glibc

/// Restore: a task's attachment of a SysV shm segment, made by the task itself (shmat) at its
/// dumped address, with its dumped protection. The segment exists by then: made with the
/// IPC namespace, or checked by HostSysVShm in one the tree does not own.
enum SysVShmAttach {
    static let shmExec: UInt64 = 0o100000

    /// `v` is one VMA of an attachment (`all`: the task's VMAs): the first (offset 0) attaches
    /// the whole segment, writable if any piece is; each piece then gets its own protection.
    static func attach(_ v: Img_VmaEntry, of all: [Img_VmaEntry], remote: Remote, pid: Int32) throws {
        if v.pgoff == 0 {
            let base = v.start
            let pieces = all.filter { $0.status & VmaStatus.sysvipc != 0 && $0.shmid == v.shmid && $0.start &- $0.pgoff == base }
            let any = pieces.reduce(UInt64(0)) { $0 | UInt64($1.prot) }
            var flags: UInt64 = any & UInt64(PROT_WRITE) != 0 ? 0 : UInt64(SHM_RDONLY)
            if any & UInt64(PROT_EXEC) != 0 { flags |= shmExec }
            let at: UInt64
            do { at = try remote.syscall(.shmat, v.shmid, v.start, flags) } catch {
                throw RestoreError.layout(pid: pid, reason: "attaching SysV shm id \(v.shmid) at 0x\(String(v.start, radix: 16)): \(error)")
            }
            guard at == v.start else {
                throw RestoreError.layout(pid: pid, reason: "SysV shm id \(v.shmid) attached at 0x\(String(at, radix: 16)), not 0x\(String(v.start, radix: 16))")
            }
        }
        // shmat gives read (write, exec) to the whole: each piece's own comes from mprotect.
        try remote.syscall(.mprotect, v.start, v.end - v.start, UInt64(v.prot))
    }
}
