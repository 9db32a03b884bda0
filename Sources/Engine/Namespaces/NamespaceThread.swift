import CKernel
import Foundation
import Glibc

/// Runs work inside another task's uts, ipc or net namespaces on a thread of its own: setns
/// of these kinds changes only the calling thread, which ends with the work, so cryo's other
/// threads never see the namespace.
enum NamespaceThread {
    /// The work and its outcome, handed to the thread and back (the caller waits for it).
    private final class Job<T>: @unchecked Sendable {
        let body: () throws -> T
        var result: Result<T, Error>?
        let done = DispatchSemaphore(value: 0)
        init(_ body: @escaping () throws -> T) { self.body = body }
    }

    static func run<T>(in kinds: [NamespaceKind], of pid: Int32, _ body: @escaping () throws -> T) throws -> T {
        precondition(!kinds.contains(.mnt) && !kinds.contains(.user) && !kinds.contains(.pid), "per-thread setns only")
        let job = Job(body)
        let t = Thread { [job] in
            defer { job.done.signal() }
            job.result = Result {
                for k in kinds {
                    let path = "/proc/\(pid)/ns/\(k.procName)"
                    let fd = open(path, O_RDONLY | O_CLOEXEC)
                    guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, context: path) }
                    defer { close(fd) }
                    guard ck_syscall6(308 /* setns */, Int(fd), Int(k.cloneFlag), 0, 0, 0, 0) == 0 else {
                        throw SystemCallError(call: "setns", errno: ck_errno(), context: path)
                    }
                }
                return try job.body()
            }
        }
        t.start()
        job.done.wait()
        return try job.result!.get()
    }
}
