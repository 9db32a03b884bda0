// The page-server scenario's limit: the raw stream of rawLoopbackStream, but the reader stores
// what it gets into a file in the benchmark's folder the way `cryo page-server` does (socket ->
// pipe -> file with splice, the same pipe size). A page server has to keep every byte; the
// plain stream throws them away, so it measures the network path alone. The sender either
// copies from a buffer (write) or hands its pages to TCP by reference (vmsplice, then splice
// pipe -> socket, as a spliced dump does): the faster of the two is the machine's limit.
import CKernel
import Engine
import Foundation
import Glibc

func rawLoopbackStreamStored(bytes: Int, dir: String, zeroCopySender: Bool) throws -> Double {
    let (lfd, port) = try TCP.listen(address: "127.0.0.1", port: 0)
    defer { close(lfd) }
    let done = DispatchSemaphore(value: 0)
    let file = dir + "/raw-stream.bin"
    let reader = Thread {
        let c = accept(lfd, nil, nil)
        let out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        var p: [Int32] = [-1, -1]
        _ = pipe(&p)
        let size = PipeSize.grow(p[1])
        var got = 0
        var off: Int64 = 0
        while got < bytes {
            let n = ck_syscall6(275 /* splice */, Int(c), 0, Int(p[1]), 0, min(size, bytes - got), 1)
            if n <= 0 { break }
            var left = n
            while left > 0 {
                let w = withUnsafeMutablePointer(to: &off) { ck_syscall6(275, Int(p[0]), 0, Int(out), Int(bitPattern: $0), left, 1) }
                if w <= 0 { break }
                left -= w
            }
            got += n
        }
        close(p[0]); close(p[1]); close(out); close(c)
        done.signal()
    }
    reader.start()
    defer { unlink(file) }
    if zeroCopySender { return try streamSplicedTo(port: port, bytes: bytes, until: done) }
    return try streamTo(port: port, bytes: bytes, until: done)
}

/// As streamTo, but the sender's pages go to TCP by reference: vmsplice of a 32 MiB buffer
/// into a pipe, splice from the pipe into the socket (what a spliced dump's task and cryo do).
func streamSplicedTo(port: UInt16, bytes: Int, until done: DispatchSemaphore) throws -> Double {
    let chunk = 32 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    memset(buf, 7, chunk)
    defer { buf.deallocate() }
    var p: [Int32] = [-1, -1]
    guard pipe(&p) == 0 else { die("pipe: \(String(cString: strerror(errno)))") }
    defer { close(p[0]); close(p[1]) }
    let size = PipeSize.grow(p[1])
    let fd = try TCP.connect(address: "127.0.0.1", port: port)
    defer { close(fd) }
    return timed {
        var sent = 0
        while sent < bytes {
            let n = min(size, bytes - sent, chunk - sent % chunk)
            var iov = iovec(iov_base: buf + sent % chunk, iov_len: n)
            let k = withUnsafeMutablePointer(to: &iov) { ck_syscall6(278 /* vmsplice */, Int(p[1]), Int(bitPattern: $0), 1, 0, 0, 0) }
            if k <= 0 { die("vmsplice: \(String(cString: strerror(ck_errno())))") }
            var left = k
            while left > 0 {
                let s = ck_syscall6(275 /* splice */, Int(p[0]), 0, Int(fd), 0, left, 1 | 4)
                if s <= 0 { die("splice to the socket: \(String(cString: strerror(ck_errno())))") }
                left -= s
            }
            sent += k
        }
        done.wait()
    }
}
