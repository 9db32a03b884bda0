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

/// The same stored stream, with the file's page allocation taken off the receiving thread: a
/// second thread grows the file and faults its pages in (MADV_POPULATE_WRITE) a few 32 MiB
/// windows ahead, and the receiver recv()s straight into those shared mappings, so neither
/// thread holds the inode's lock while the other works. The bytes are then copied once, as with
/// splice, but the pages are zeroed when populated, which a write does not need. Measures
/// whether a storing receiver gains from the second CPU.
func rawLoopbackStreamStoredMapped(bytes: Int, dir: String) throws -> Double {
    let (lfd, port) = try TCP.listen(address: "127.0.0.1", port: 0)
    defer { close(lfd) }
    let done = DispatchSemaphore(value: 0)
    let file = dir + "/raw-stream-mapped.bin"
    let w = MappedWindows(bytes: bytes)
    let reader = Thread {
        let c = accept(lfd, nil, nil)
        let out = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let preparer = Thread { w.prepare(out) }
        preparer.start()
        var got = 0
        for i in 0..<w.count {
            let m = w.next(i)
            let want = min(MappedWindows.size, bytes - got)
            var have = 0
            while have < want {
                let n = recv(c, m + have, want - have, 0)
                if n <= 0 { die("recv into the mapping: \(n < 0 ? String(cString: strerror(errno)) : "closed")") }
                have += n
            }
            got += have
            munmap(m, MappedWindows.size)
            w.consumed(i)
        }
        _ = ftruncate(out, off_t(got))
        close(out); close(c)
        done.signal()
    }
    reader.start()
    defer { unlink(file) }
    return try streamSplicedTo(port: port, bytes: bytes, until: done)
}

/// The windows of rawLoopbackStreamStoredMapped, handed from the preparing thread to the
/// receiving one; the preparer stays at most two windows ahead.
final class MappedWindows: @unchecked Sendable {
    static let size = 32 << 20
    let count: Int
    private let cond = NSCondition()
    private var ready: [UnsafeMutableRawPointer?]
    private var done = 0

    init(bytes: Int) {
        count = (bytes + MappedWindows.size - 1) / MappedWindows.size
        ready = Array(repeating: nil, count: count)
    }

    func prepare(_ fd: Int32) {
        for i in 0..<count {
            cond.lock()
            while i > done + 2 { cond.wait() }
            cond.unlock()
            _ = ftruncate(fd, off_t((i + 1) * MappedWindows.size))
            let m = mmap(nil, MappedWindows.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(i * MappedWindows.size))
            if m == MAP_FAILED { die("mmap: \(String(cString: strerror(errno)))") }
            if madvise(m, MappedWindows.size, 23 /* MADV_POPULATE_WRITE */) != 0 { die("MADV_POPULATE_WRITE: \(String(cString: strerror(errno)))") }
            cond.lock()
            ready[i] = m
            cond.broadcast()
            cond.unlock()
        }
    }

    func next(_ i: Int) -> UnsafeMutableRawPointer {
        cond.lock()
        defer { cond.unlock() }
        while ready[i] == nil { cond.wait() }
        return ready[i]!
    }

    func consumed(_ i: Int) {
        cond.lock()
        done = i + 1
        cond.broadcast()
        cond.unlock()
    }
}
