import CKernel
import Glibc
import Foundation

/// Copies runs of another task's memory into a file, in large batches: process_vm_readv into
/// one buffer while the previous buffer is being written, so reading and writing overlap.
public final class PageCopier {
    public let pid: Int32
    let bufferSize: Int
    public private(set) var bytesCopied: UInt64 = 0

    public init(pid: Int32, bufferSize: Int = 32 << 20) {
        self.pid = pid
        self.bufferSize = bufferSize
    }

    /// Appends the contents of `runs` (in order) to `fd` at its current end. Throws if the
    /// task's memory could not be read in full (a mapping changed under us).
    public func copy(_ runs: [PageRun], to fd: Int32) throws {
        // Split runs into chunks of at most bufferSize, each a list of iovecs.
        var chunks: [[PageRun]] = []
        var cur: [PageRun] = []
        var curLen: UInt64 = 0
        for var r in runs {
            while r.length > 0 {
                let room = UInt64(bufferSize) - curLen
                let take = min(room, r.length)
                cur.append(PageRun(start: r.start, end: r.start + take))
                curLen += take
                r.start += take
                if curLen == UInt64(bufferSize) { chunks.append(cur); cur = []; curLen = 0 }
            }
        }
        if !cur.isEmpty { chunks.append(cur) }
        guard !chunks.isEmpty else { return }

        let st = CopyState(bufferSize: bufferSize)
        defer { st.deallocate() }
        // One writer thread drains filled buffers while this thread reads the next one.
        let count = chunks.count
        let writer = Thread {
            for i in 0..<count {
                st.filled.wait()
                let b = i % 2
                if st.writeError == nil {
                    do { try writeAll(fd: fd, st.bufs[b], st.lengths[b]) } catch { st.writeError = error }
                }
                st.free.signal()
            }
        }
        writer.start()
        var readError: Error?
        for (i, chunk) in chunks.enumerated() {
            st.free.wait()
            let b = i % 2
            st.lengths[b] = 0
            if readError == nil && st.writeError == nil {
                do { st.lengths[b] = try readChunk(chunk, into: st.bufs[b]) } catch { readError = error }
            }
            st.filled.signal()
        }
        st.free.wait(); st.free.wait()  // the writer has finished both buffers
        st.free.signal(); st.free.signal()  // libdispatch traps on freeing a semaphore below its start value
        if let e = readError ?? st.writeError { throw e }
        bytesCopied += runs.reduce(0) { $0 + $1.length }
    }

    func readChunk(_ chunk: [PageRun], into buf: UnsafeMutableRawPointer) throws -> Int {
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
