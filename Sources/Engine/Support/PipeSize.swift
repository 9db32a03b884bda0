import CKernel
import Glibc

/// Pipes that carry pages by splice: the larger the pipe, the fewer calls per GiB (for a dump,
/// each one an injected vmsplice with two ptrace stops).
public enum PipeSize {
    /// Enough to keep per-call costs small, small enough to pin no more than this per pipe.
    public nonisolated(unsafe) static var wanted = 16 << 20

    /// Grows `fd`'s pipe to at most `wanted` bytes and returns its size. Above
    /// fs.pipe-max-size only with CAP_SYS_RESOURCE, and the user's pipe-user-pages limits
    /// apply, so smaller sizes are tried down to 64 KiB (the default).
    @discardableResult
    public static func grow(_ fd: Int32, upTo wanted: Int = PipeSize.wanted) -> Int {
        var size = wanted
        while size > 65536 {
            let got = ck_fcntl_int(fd, 1031 /* F_SETPIPE_SZ */, Int32(size))
            if got > 0 { return Int(got) }
            size /= 2
        }
        let cur = ck_fcntl_int(fd, 1032 /* F_GETPIPE_SZ */, 0)
        return cur > 0 ? Int(cur) : 65536
    }
}
