import CKernel
import Foundation
import Glibc

/// Entering a network namespace with the calling thread only (setns moves one thread), so that
/// sockets, netlink queries and /proc/sys/net reads made meanwhile are the namespace's. Nothing
/// in between may hop threads: the callers are synchronous.
public enum NetNs {
    static let cloneNewNet: Int32 = 0x4000_0000

    // glibc declares these only under _GNU_SOURCE, which Swift's Glibc module lacks.
    static func setns(_ fd: Int32, _ type: Int32) -> Int32 { Int32(ck_syscall6(308, Int(fd), Int(type), 0, 0, 0, 0)) }
    static func unshare(_ flags: Int32) -> Int32 { Int32(ck_syscall6(272, Int(flags), 0, 0, 0, 0, 0)) }

    /// An fd of the calling thread's network namespace.
    public static func current() throws -> Int32 {
        let fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(call: "open(/proc/thread-self/ns/net)", errno: errno) }
        return fd
    }

    /// An fd of the network namespace of process `pid`.
    public static func of(pid: Int32) throws -> Int32 {
        let fd = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(call: "open(/proc/\(pid)/ns/net)", errno: errno) }
        return fd
    }

    public static func inode(_ fd: Int32) -> UInt64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    /// Runs `body` with this thread in the namespace of `nsFD`, and puts it back after.
    public static func within<T>(_ nsFD: Int32, _ body: () throws -> T) throws -> T {
        let back = try current()
        defer { close(back) }
        if inode(back) == inode(nsFD) { return try body() }
        guard setns(nsFD, cloneNewNet) == 0 else { throw SystemCallError(call: "setns(CLONE_NEWNET)", errno: errno, context: "network namespace net:[\(inode(nsFD))]") }
        defer {
            // Our own namespace, by an fd we hold: the kernel has no reason to refuse.
            let rc = setns(back, cloneNewNet)
            precondition(rc == 0, "cryo could not return to its network namespace: errno \(errno)")
        }
        return try body()
    }

    /// Where a tool is installed, among the usual places, or nil.
    static func tool(_ name: String) -> String? {
        ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + name }.first { access($0, X_OK) == 0 }
    }

    /// Runs `path args` inside the namespace of `nsFD` (spawned from this thread while it is
    /// there) with `input` on its stdin; returns its exit status and what it printed.
    static func run(_ path: String, _ args: [String], input: String = "", in nsFD: Int32) throws -> (status: Int32, output: String) {
        let (st, out) = try Spawn.run(path, args, input: Array(input.utf8)) { spawn in try within(nsFD) { spawn() } }
        return (st, String(decoding: out, as: UTF8.self))
    }
}
