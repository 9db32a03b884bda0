import CKernel
import Glibc

extension Ptrace {
    static let seccompGetMetadata = 0x420d

    /// The classic BPF program of filter `index` of a stopped tracee (0 is the oldest, the
    /// kernel's order), as raw struct sock_filter bytes; nil past the newest (ENOENT).
    public static func seccompFilter(_ tid: Int32, index: Int) throws -> [UInt8]? {
        let count = ck_ptrace(Request.seccompGetFilter.rawValue, tid, UnsafeMutableRawPointer(bitPattern: index), nil)
        if count < 0 {
            let e = ck_errno()
            if e == ENOENT { return nil }
            throw SystemCallError(call: "ptrace(PTRACE_SECCOMP_GET_FILTER, \(index))", errno: e, context: "tid \(tid)")
        }
        var buf = [UInt8](repeating: 0, count: count * 8)
        let got = buf.withUnsafeMutableBytes { ck_ptrace(Request.seccompGetFilter.rawValue, tid, UnsafeMutableRawPointer(bitPattern: index), $0.baseAddress) }
        guard got == count else {
            throw SystemCallError(call: "ptrace(PTRACE_SECCOMP_GET_FILTER, \(index))", errno: got < 0 ? ck_errno() : EAGAIN, context: "tid \(tid)")
        }
        return buf
    }

    /// The SECCOMP_FILTER_FLAG_* a filter was installed with, as far as the kernel tells
    /// (SECCOMP_FILTER_FLAG_LOG only).
    public static func seccompFlags(_ tid: Int32, index: Int) throws -> UInt32 {
        var md: (filterOff: UInt64, flags: UInt64) = (UInt64(index), 0)
        let r = withUnsafeMutablePointer(to: &md) {
            ck_ptrace(seccompGetMetadata, tid, UnsafeMutableRawPointer(bitPattern: 16), UnsafeMutableRawPointer($0))
        }
        if r < 0 { throw SystemCallError(call: "ptrace(PTRACE_SECCOMP_GET_METADATA, \(index))", errno: ck_errno(), context: "tid \(tid)") }
        return UInt32(truncatingIfNeeded: md.flags)
    }
}
