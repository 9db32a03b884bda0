import CKernel
import Glibc
import Foundation

/// The pages of one task to copy into its pages file, in pagemap order. `readable` runs come
/// through process_vm_readv; the others (PROT_NONE, exec-only, or pages a child still shares
/// copy-on-write, which a pinning read would unshare) through /proc/PID/mem.
public struct PageJob {
    public let pid: Int32
    public let fd: Int32
    public let file: String
    public var batches: [(runs: [PageRun], readable: Bool)]
}

/// Copies the pages of every task of a dump into their files in large batches, one thread
/// reading (process_vm_readv or /proc/PID/mem) into one buffer while another writes the
/// previous one. Jobs follow each other in the same pipeline, so a tree of small processes
/// overlaps reading and writing as well as one big process does, and the two buffers are
/// allocated and faulted in once.
public final class PageCopier {
    let bufferSize: Int
    public private(set) var bytesCopied: UInt64 = 0

    public init(bufferSize: Int = 32 << 20) { self.bufferSize = bufferSize }

    /// One chunk: at most bufferSize bytes of one job, read one way.
    struct Chunk { var job: Int; var runs: [PageRun]; var readable: Bool; var bytes: Int }

    public func copy(_ jobs: [PageJob]) throws {
        var chunks: [Chunk] = []
        for (j, job) in jobs.enumerated() {
            for b in job.batches {
                var cur = Chunk(job: j, runs: [], readable: b.readable, bytes: 0)
                for var r in b.runs {
                    while r.length > 0 {
                        let take = min(UInt64(bufferSize - cur.bytes), r.length)
                        cur.runs.append(PageRun(start: r.start, end: r.start + take))
                        cur.bytes += Int(take)
                        r.start += take
                        if cur.bytes == bufferSize { chunks.append(cur); cur = Chunk(job: j, runs: [], readable: b.readable, bytes: 0) }
                    }
                }
                if cur.bytes > 0 { chunks.append(cur) }
            }
        }
        guard !chunks.isEmpty else { return }

        let st = CopyState(bufferSize: bufferSize)
        defer { st.deallocate() }
        let count = chunks.count
        let fds = jobs.map(\.fd)
        let plan = chunks.map(\.job)
        let writer = Thread {
            for i in 0..<count {
                st.filled.wait()
                let b = i % 2
                if st.writeError == nil {
                    do { try writeAll(fd: fds[plan[i]], st.bufs[b], st.lengths[b]) } catch { st.writeError = error }
                }
                st.free.signal()
            }
        }
        writer.start()
        var readError: Error?
        var mems: [Int32: Int32] = [:]
        defer { for fd in mems.values { close(fd) } }
        for (i, chunk) in chunks.enumerated() {
            st.free.wait()
            let b = i % 2
            st.lengths[b] = 0
            if readError == nil && st.writeError == nil {
                let pid = jobs[chunk.job].pid
                do {
                    if chunk.readable {
                        st.lengths[b] = try readChunk(chunk.runs, pid: pid, into: st.bufs[b])
                    } else {
                        if mems[pid] == nil {
                            let m = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
                            if m < 0 { throw SystemCallError(call: "open", errno: errno, context: "/proc/\(pid)/mem") }
                            mems[pid] = m
                        }
                        st.lengths[b] = try readThroughMem(chunk.runs, pid: pid, mem: mems[pid]!, into: st.bufs[b])
                    }
                } catch { readError = error }
            }
            st.filled.signal()
        }
        st.free.wait(); st.free.wait()  // the writer has finished both buffers
        st.free.signal(); st.free.signal()  // libdispatch traps on freeing a semaphore below its start value
        if let e = readError ?? st.writeError { throw e }
        bytesCopied += UInt64(chunks.reduce(0) { $0 + $1.bytes })
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
