import CKernel
import Glibc

/// Moves bytes from one fd to another through a pipe of its own with splice(2): socket
/// buffers' pages pass through this process by reference, and are copied at most once, into
/// the file they end in. recv() then send() or pwrite() copied each byte twice. The image
/// proxy (unix socket -> TCP) and the image cache (TCP -> memfd) relay data frames this way.
/// After a failure bytes may be left in the pipe: the relay refuses further use.
public final class SpliceRelay {
    let r: Int32, w: Int32
    let size: Int
    private var broken = false

    public init() throws {
        // splice() into a socket sends without MSG_NOSIGNAL: a peer gone must be EPIPE, not
        // the end of the relaying process (a proxy serves other dumps on).
        signal(SIGPIPE, SIG_IGN)
        var p: [Int32] = [-1, -1]
        _ = try p.withUnsafeMutableBufferPointer { try Sys.call(.pipe2, Int(bitPattern: $0.baseAddress!), Int(O_CLOEXEC), context: "splice relay pipe") }
        r = p[0]; w = p[1]
        size = PipeSize.grow(w, upTo: 1 << 20)
    }

    deinit { close(r); close(w) }

    /// Moves `count` bytes from `src` to `dst`, at `dstOffset` when `dst` is a file (nil: its
    /// own position, a socket). Returns the bytes moved: fewer only when `src` ended first.
    /// `what` names the transfer in errors.
    public func move(from src: Int32, to dst: Int32, at dstOffset: Int? = nil, count: Int, what: String) throws -> Int {
        guard !broken else { throw SystemCallError(call: "splice", errno: EPIPE, context: "\(what): relay pipe left dirty by an earlier failure") }
        broken = true
        var moved = 0
        while moved < count {
            let n = ck_syscall6(SyscallNumber.splice.rawValue, Int(src), 0, Int(w), 0, min(count - moved, size), 1 /* SPLICE_F_MOVE */)
            if n < 0 && ck_errno() == EINTR { continue }
            if n < 0 { throw SystemCallError(call: "splice", errno: ck_errno(), context: "\(what): reading") }
            if n == 0 { broken = false; return moved }
            let out = Sys.spliceAll(from: r, to: dst, at: dstOffset.map { $0 + moved }, count: n, flags: dstOffset == nil ? 1 | 4 /* SPLICE_F_MOVE | SPLICE_F_MORE */ : 1)
            guard out.moved == n else { throw SystemCallError(call: "splice", errno: out.errno != 0 ? out.errno : EIO, context: "\(what): writing") }
            moved += n
        }
        broken = false
        return moved
    }
}
