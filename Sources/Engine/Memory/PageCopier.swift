import CKernel
import Glibc
import Foundation

/// The pages of one task to copy, in pagemap order, into its image's stream (PageTransport). `readable` runs come
/// through process_vm_readv; the others (PROT_NONE, exec-only, or pages a child still shares
/// copy-on-write, which a pinning read would unshare) through /proc/PID/mem.
public struct PageJob {
    public let pid: Int32
    public let stream: PageStream
    public var batches: [(runs: [PageRun], readable: Bool)]
    public var readableBytes: UInt64 { batches.filter(\.readable).reduce(0) { $0 + $1.runs.reduce(0) { $0 + $1.length } } }
}

/// Copies the pages of every task of a dump into their files in large batches: a reading
/// thread (process_vm_readv or /proc/PID/mem) fills one buffer while a writing thread writes
/// the other. Jobs are submitted as the tracer finishes each task, so copying one task's
/// pages overlaps reading the next task's state, and a tree of small processes keeps the
/// pipeline as full as one big process does. The buffers are allocated and faulted in once.
public final class PageCopier: @unchecked Sendable {
    let bufferSize: Int
    public private(set) var bytesCopied: UInt64 = 0

    /// One chunk: at most bufferSize bytes of one job, read one way.
    /// `last`: the job's final chunk, after which its stream is finished (possibly with no bytes).
    struct Chunk { var pid: Int32; var stream: PageStream; var runs: [PageRun]; var readable: Bool; var bytes: Int; var last = false }

    private let lock = NSLock()
    private var queue: [Chunk] = []
    private var closed = false
    private let queued = DispatchSemaphore(value: 0)
    private let st: CopyState
    private var reader: Thread?
    private var writer: Thread?
    private let readerDone = DispatchSemaphore(value: 0)
    private let writerDone = DispatchSemaphore(value: 0)
    private var readError: Error?

    public init(bufferSize: Int = 32 << 20) {
        self.bufferSize = bufferSize
        st = CopyState(bufferSize: bufferSize)
    }

    deinit { st.deallocate() }

    /// Queues a job's pages; copying starts at once in the background.
    public func submit(_ job: PageJob) {
        var chunks: [Chunk] = []
        for b in job.batches {
            var cur = Chunk(pid: job.pid, stream: job.stream, runs: [], readable: b.readable, bytes: 0)
            for var r in b.runs {
                while r.length > 0 {
                    let take = min(UInt64(bufferSize - cur.bytes), r.length)
                    cur.runs.append(PageRun(start: r.start, end: r.start + take))
                    cur.bytes += Int(take)
                    r.start += take
                    if cur.bytes == bufferSize { chunks.append(cur); cur = Chunk(pid: job.pid, stream: job.stream, runs: [], readable: b.readable, bytes: 0) }
                }
            }
            if cur.bytes > 0 { chunks.append(cur) }
        }
        if chunks.isEmpty { chunks.append(Chunk(pid: job.pid, stream: job.stream, runs: [], readable: true, bytes: 0)) }
        chunks[chunks.count - 1].last = true
        lock.lock()
        queue += chunks
        lock.unlock()
        for _ in chunks { queued.signal() }
        startIfNeeded()
    }

    /// Waits until everything submitted is written; throws the first error.
    public func finish() throws {
        lock.lock()
        let first = !closed
        closed = true
        lock.unlock()
        if first {
            queued.signal()  // wakes the reader to see the end
            if reader != nil { readerDone.wait(); writerDone.wait() }
        }
        if let e = readError ?? st.writeError { throw e }
    }

    /// Copies `jobs` and waits (a dump with nothing to overlap).
    public func copy(_ jobs: [PageJob]) throws {
        for j in jobs { submit(j) }
        try finish()
    }

    private func startIfNeeded() {
        guard reader == nil else { return }
        // Chunks flow reader -> writer in order; the writer learns each chunk's stream from `order`.
        let order = OrderQueue()
        let st = self.st
        let writer = Thread { [writerDone] in
            while let (stream, last) = order.pop() {
                st.filled.wait()
                let b = order.index % 2
                order.index += 1
                if st.writeError == nil {
                    do {
                        try stream.write(st.bufs[b], st.lengths[b])
                        if last { try stream.finish() }
                    } catch { st.writeError = error }
                }
                st.free.signal()
            }
            writerDone.signal()
        }
        let reader = Thread { [self] in
            var mems: [Int32: Int32] = [:]
            var i = 0
            while true {
                queued.wait()
                lock.lock()
                let next = queue.isEmpty ? nil : queue.removeFirst()
                let end = closed && next == nil
                lock.unlock()
                guard let chunk = next else { if end { break } else { continue } }
                st.free.wait()
                let b = i % 2
                i += 1
                st.lengths[b] = 0
                if readError == nil && st.writeError == nil {
                    do {
                        if chunk.runs.isEmpty {
                        } else if chunk.readable {
                            st.lengths[b] = try readChunk(chunk.runs, pid: chunk.pid, into: st.bufs[b])
                        } else {
                            if mems[chunk.pid] == nil {
                                let m = open("/proc/\(chunk.pid)/mem", O_RDONLY | O_CLOEXEC)
                                if m < 0 { throw SystemCallError(call: "open", errno: errno, context: "/proc/\(chunk.pid)/mem") }
                                mems[chunk.pid] = m
                            }
                            st.lengths[b] = try readThroughMem(chunk.runs, pid: chunk.pid, mem: mems[chunk.pid]!, into: st.bufs[b])
                        }
                        bytesCopied += UInt64(chunk.bytes)
                    } catch { readError = error }
                }
                order.push(chunk.stream, last: chunk.last)
                st.filled.signal()
            }
            for fd in mems.values { close(fd) }
            order.close()
            readerDone.signal()
        }
        self.reader = reader
        self.writer = writer
        writer.start()
        reader.start()
    }

    /// /proc/PID/mem reads with FOLL_FORCE and without pinning.
    func readThroughMem(_ runs: [PageRun], pid: Int32, mem: Int32, into buf: UnsafeMutableRawPointer) throws -> Int {
        var off = 0
        for r in runs {
            let n = Int(r.length)
            let got = pread(mem, buf + off, n, off_t(Int64(bitPattern: r.start)))
            guard got == n else {
                throw DumpError.memoryChanged(pid: pid, detail: "read \(got) of \(n) bytes at 0x\(String(r.start, radix: 16)) through /proc/\(pid)/mem")
            }
            off += n
        }
        return off
    }

    func readChunk(_ chunk: [PageRun], pid: Int32, into buf: UnsafeMutableRawPointer) throws -> Int {
        var remote: [iovec] = []
        var total = 0
        for r in chunk {
            remote.append(iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(r.start)), iov_len: Int(r.length)))
            total += Int(r.length)
        }
        var done = 0
        var idx = 0
        // process_vm_readv takes at most IOV_MAX (1024) remote iovecs per call.
        while idx < remote.count {
            let n = min(1024, remote.count - idx)
            let want = remote[idx..<(idx + n)].reduce(0) { $0 + $1.iov_len }
            var l = iovec(iov_base: buf + done, iov_len: want)
            let got = remote.withUnsafeBufferPointer { rp in
                withUnsafePointer(to: &l) { lp in
                    ck_syscall6(SyscallNumber.processVmReadv.rawValue, Int(pid), Int(bitPattern: lp), 1,
                                Int(bitPattern: rp.baseAddress! + idx), n, 0)
                }
            }
            if got < 0 { throw SystemCallError(call: "process_vm_readv", errno: ck_errno(), context: "pid \(pid) at 0x\(String(UInt(bitPattern: remote[idx].iov_base), radix: 16))") }
            if got != want {
                throw SystemCallError(call: "process_vm_readv", errno: EFAULT,
                                      context: "pid \(pid): short read \(got) of \(want) bytes near 0x\(String(UInt(bitPattern: remote[idx].iov_base), radix: 16))")
            }
            done += want
            idx += n
        }
        return total
    }
}

func writeAll(fd: Int32, _ buf: UnsafeRawPointer, _ len: Int) throws {
    var off = 0
    while off < len {
        let n = write(fd, buf + off, len - off)
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemCallError(call: "write", errno: errno, context: "image fd \(fd)")
        }
        off += n
    }
}

/// Buffers shared by the reading and the writing thread; the semaphores order every access.
final class CopyState: @unchecked Sendable {
    let bufs: [UnsafeMutableRawPointer]
    var lengths = [0, 0]
    var writeError: Error?
    let filled = DispatchSemaphore(value: 0)
    let free = DispatchSemaphore(value: 2)

    init(bufferSize: Int) {
        bufs = (0..<2).map { _ in UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096) }
    }
    func deallocate() { bufs.forEach { $0.deallocate() } }
}

/// The streams of filled buffers, in order, from the reading to the writing thread.
final class OrderQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var fds: [(PageStream, Bool)] = []
    private var closed = false
    private let available = DispatchSemaphore(value: 0)
    var index = 0  // the writer's own count

    func push(_ s: PageStream, last: Bool) { lock.lock(); fds.append((s, last)); lock.unlock(); available.signal() }
    func close() { lock.lock(); closed = true; lock.unlock(); available.signal() }
    /// The next stream, or nil once closed and drained.
    func pop() -> (PageStream, Bool)? {
        while true {
            available.wait()
            lock.lock()
            defer { lock.unlock() }
            if !fds.isEmpty { return fds.removeFirst() }
            if closed { return nil }
        }
    }
}
