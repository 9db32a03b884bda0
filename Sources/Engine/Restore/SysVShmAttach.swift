import Foundation
import Glibc

/// Restore: a task's attachment of a SysV shm segment, made by the task itself (shmat) at its
/// dumped address, with its dumped protection. The segment exists by then: made with the
/// IPC namespace, or checked by HostSysVShm in one the tree does not own.
enum SysVShmAttach {
    static let shmExec: UInt64 = 0o100000

    static func attach(_ v: Img_VmaEntry, remote: Remote, pid: Int32) throws {
        let prot = UInt64(v.prot)
        var flags: UInt64 = prot & UInt64(PROT_WRITE) != 0 ? 0 : UInt64(SHM_RDONLY)
        if prot & UInt64(PROT_EXEC) != 0 { flags |= shmExec }
        let at: UInt64
        do { at = try remote.syscall(.shmat, v.shmid, v.start, flags) } catch {
            throw RestoreError.layout(pid: pid, reason: "attaching SysV shm id \(v.shmid) at 0x\(String(v.start, radix: 16)): \(error)")
        }
        guard at == v.start else {
            throw RestoreError.layout(pid: pid, reason: "SysV shm id \(v.shmid) attached at 0x\(String(at, radix: 16)), not 0x\(String(v.start, radix: 16))")
        }
        // shmat gives read (and write) only: PROT_NONE or a missing read comes from mprotect.
        let given = UInt64(PROT_READ) | (flags & UInt64(SHM_RDONLY) == 0 ? UInt64(PROT_WRITE) : 0) | (flags & shmExec != 0 ? UInt64(PROT_EXEC) : 0)
        if given != prot { try remote.syscall(.mprotect, v.start, v.end - v.start, prot) }
    }
}
