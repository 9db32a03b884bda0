import CKernel
import Foundation
import Glibc

/// An IPC namespace. cryo restores one whose SysV objects and limits are a new namespace's:
/// any shm segment, semaphore set or message queue is refused by id and key (their contents
/// are not restored yet), and so is a limit that differs from what a new namespace gets.
enum IpcNamespace: NamespaceContents {
    static let kind = NamespaceKind.ipc

    static let objects = ["shm", "sem", "msg"]
    static let limits = ["kernel/shmmax", "kernel/shmall", "kernel/shmmni", "kernel/shm_rmid_forced", "kernel/msgmax",
                         "kernel/msgmnb", "kernel/msgmni", "kernel/sem", "fs/mqueue/queues_max", "fs/mqueue/msg_max", "fs/mqueue/msgsize_max"]

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let inode = try proc.namespaceInode(pid: pid, kind: "ipc")
        let (used, values) = try NamespaceThread.run(in: [.ipc], of: pid) { () throws -> ([String], [String]) in
            var used: [String] = []
            for o in objects {
                let lines = try proc.readText("/proc/sysvipc/\(o)").split(separator: "\n").dropFirst()
                for l in lines {
                    let f = l.split(separator: " ", omittingEmptySubsequences: true)
                    if f.count > 1 { used.append("SysV \(o) id \(f[1]) key \(f[0])") }
                }
            }
            return (used, try limits.map { try proc.readText("/proc/sys/\($0)") })
        }
        if let u = used.first {
            throw NamespaceError.unsupported(pid: pid, kind: "ipc", inode: inode, reason: "\(u): the contents of SysV objects are not restored yet")
        }
        // What a new namespace starts with, read in one made for the purpose.
        let fresh = try freshLimits()
        for (i, name) in limits.enumerated() where values[i] != fresh[i] {
            throw NamespaceError.unsupported(pid: pid, kind: "ipc", inode: inode,
                reason: "\(name) is \(values[i].trimmingCharacters(in: .whitespacesAndNewlines)), not a new namespace's \(fresh[i].trimmingCharacters(in: .whitespacesAndNewlines)); limits are not restored yet")
        }
    }

    static func freshLimits() throws -> [String] {
        try NamespaceThread.run(in: [], of: getpid()) { () throws -> [String] in
            guard ck_syscall6(272 /* unshare */, Int(NamespaceKind.ipc.cloneFlag), 0, 0, 0, 0, 0) == 0 else {
                throw SystemCallError(call: "unshare(CLONE_NEWIPC)", errno: ck_errno(), context: "ipc limits")
            }
            return try limits.map { try ProcReader().readText("/proc/sys/\($0)") }
        }
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {}
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}
}
