import Foundation
import CKernel
import Glibc

/// Two fill buffers for a whole restore: allocated, and faulted in, once rather than for every
/// task (a fresh 32 MiB buffer costs as much in page faults as the copy it serves).
final class FillBuffers: @unchecked Sendable {
    let size: Int
    let bufs: [UnsafeMutableRawPointer]
    // Small: a chunk read is still in the cache when the writer copies it out, and a 16 MiB task
    // fills in 64 chunks, so its reads and writes overlap all along. Measured with cryo-bench
    // (1 GiB): 4 MiB chunks restored the tree in 0.99-1.02 s and the single process in
    // 0.68-0.69 s; 256 KiB chunks in 0.84-0.86 s and 0.64-0.65 s.
    init(size: Int = 256 << 10) {
        self.size = size
        bufs = (0..<2).map { _ in UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096) }
    }
    deinit { bufs.forEach { $0.deallocate() } }
}

/// Fills a task's memory from the pages files of a snapshot chain: this thread reads the files
/// into one buffer while another writes the previous buffer into the task with
/// process_vm_writev (many target ranges per call), so reading and filling overlap.
struct PageFiller {
    let pid: Int32
    let buffers: FillBuffers

    /// Each segment's bytes come from the newest snapshot holding them. Segments are in
    /// address order; every file is read sequentially within itself.
    func fill(from sources: PageSources) throws {
        if let direct = inMemory(sources) { return try writeDirect(direct) }
        // Chunks of at most one buffer: (target runs, file reads).
        struct Read { var fd: Int32; var file: String; var offset: Int; var bytes: Int; var mem: UnsafeRawPointer? }
        var chunks: [(runs: [PageRun], reads: [Read], bytes: Int)] = []
        var cur: (runs: [PageRun], reads: [Read], bytes: Int) = ([], [], 0)
        for s in sources.segments {
            // A stream's final dump on folders of pre-dumps: some files, some memory.
            let mem = sources.bytes(for: s)
            guard let src = s.source, let (fd, file) = sources.fd(for: s) ?? mem.map({ _ in (-1, src.directory.filePath(.pages, Int(src.pagesID))) }) else { continue }
            var start = s.vaddr
            var fileOffset = src.offset
            var left = s.byteCount
            while left > 0 {
                let take = min(buffers.size - cur.bytes, left)
                cur.runs.append(PageRun(start: start, end: start + UInt64(take)))
                cur.reads.append(Read(fd: fd, file: file, offset: fileOffset, bytes: take, mem: mem.map { $0 + (fileOffset - src.offset) }))
                cur.bytes += take
                start += UInt64(take); fileOffset += take; left -= take
                if cur.bytes == buffers.size { chunks.append(cur); cur = ([], [], 0) }
            }
        }
        if cur.bytes > 0 { chunks.append(cur) }
        guard !chunks.isEmpty else { return }

        let st = FillState()
        let bufs = buffers.bufs
        let count = chunks.count
        let runs = chunks.map(\.runs), sizes = chunks.map(\.bytes)
        let me = self
        let writer = Thread {
            for i in 0..<count {
                st.filled.wait()
                if st.error == nil && !st.readFailed {
                    do { try me.writeOut(runs[i], from: me.buffers.bufs[i % 2], bytes: sizes[i]) } catch { st.error = error }
                }
                st.free.signal()
            }
        }
        writer.start()
        var readError: Error?
        for (i, c) in chunks.enumerated() {
            st.free.wait()
            if readError == nil && st.error == nil {
                var at = 0
                do {
                    for r in c.reads {
                        if let m = r.mem { memcpy(bufs[i % 2] + at, m, r.bytes); at += r.bytes; continue }
                        var done = 0
                        while done < r.bytes {
                            let n = pread(r.fd, bufs[i % 2] + at + done, r.bytes - done, off_t(r.offset + done))
                            if n < 0 && errno == EINTR { continue }
                            guard n > 0 else { throw ImageError.truncated(file: r.file, offset: r.offset + done, needed: r.bytes - done, available: 0) }
                            done += n
                        }
                        at += r.bytes
                    }
                } catch { readError = error; st.readFailed = true }
            }
            st.filled.signal()
        }
        st.free.wait(); st.free.wait()  // the writer has finished both buffers
        st.free.signal(); st.free.signal()  // libdispatch traps on freeing a semaphore below its start value
        if let e = readError ?? st.error { throw e }
    }

    /// Every page in this process's memory already (a stream's images): (where, target run)
    /// pairs, or nil when some come from files.
    func inMemory(_ sources: PageSources) -> [(UnsafeRawPointer, PageRun)]? {
        var out: [(UnsafeRawPointer, PageRun)] = []
        for s in sources.segments where s.source != nil {
            if let b = sources.bytes(for: s) {
                // Pieces of at most 256 MiB, so a call stays below MAX_RW_COUNT (2 GiB - 4 KiB).
                var off = 0
                while off < s.byteCount {
                    let k = min(256 << 20, s.byteCount - off)
                    out.append((b + off, PageRun(start: s.vaddr + UInt64(off), end: s.vaddr + UInt64(off + k))))
                    off += k
                }
            } else if sources.fd(for: s) != nil {
                return nil
            }
        }
        return out
    }

    /// process_vm_writev straight from where the pages are: no buffer, no second copy. A large
    /// fill is cut in two halves written by two threads, as the buffered path keeps two busy:
    /// the copy and the task's page faults share two cores, and a loaded machine's scheduler
    /// gives two threads two shares.
    func writeDirect(_ pairs: [(UnsafeRawPointer, PageRun)]) throws {
        let total = pairs.reduce(0) { $0 + Int($1.1.length) }
        guard total >= 32 << 20 else { return try writeDirectRange(pairs) }
        var halves: [[(UnsafeRawPointer, PageRun)]] = [[], []]
        var acc = 0
        for (p, r) in pairs {
            let len = Int(r.length), cut = (total / 2 - acc) & ~4095
            if acc >= total / 2 || cut <= 0 {
                halves[1].append((p, r))
            } else if cut >= len {
                halves[0].append((p, r))
            } else {
                halves[0].append((p, PageRun(start: r.start, end: r.start + UInt64(cut))))
                halves[1].append((p + cut, PageRun(start: r.start + UInt64(cut), end: r.end)))
            }
            acc += len
        }
        let st = FillState()
        // Read-only pointers into the staging, which outlives both threads.
        nonisolated(unsafe) let second = halves[1]
        let me = self
        let t = Thread {
            do { try me.writeDirectRange(second) } catch { st.error = error }
            st.filled.signal()
        }
        t.start()
        var mine: Error?
        do { try writeDirectRange(halves[0]) } catch { mine = error }
        st.filled.wait()
        if let e = mine ?? st.error { throw e }
    }

    func writeDirectRange(_ pairs: [(UnsafeRawPointer, PageRun)]) throws {
        var idx = 0
        while idx < pairs.count {
            var n = 0, want = 0
            while idx + n < pairs.count && n < 1024 && want < (1 << 30) { want += Int(pairs[idx + n].1.length); n += 1 }
            let local = pairs[idx..<(idx + n)].map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.0), iov_len: Int($0.1.length)) }
            let remote = pairs[idx..<(idx + n)].map { iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.1.start)), iov_len: Int($0.1.length)) }
            let got = local.withUnsafeBufferPointer { lp in remote.withUnsafeBufferPointer { rp in
                ck_syscall6(SyscallNumber.processVmWritev.rawValue, Int(pid), Int(bitPattern: lp.baseAddress!), n,
                            Int(bitPattern: rp.baseAddress!), n, 0)
            } }
            guard got == want else {
                throw RestoreError.layout(pid: pid, reason: "filling memory near 0x\(String(pairs[idx].1.start, radix: 16)): wrote \(got) of \(want) bytes (errno \(ck_errno()))")
            }
            idx += n
        }
    }

    /// process_vm_writev of `runs` (in order) from `buf`, up to IOV_MAX ranges per call.
    func writeOut(_ runs: [PageRun], from buf: UnsafeMutableRawPointer, bytes: Int) throws {
        var idx = 0
        var local = 0
        while idx < runs.count {
            let n = min(1024, runs.count - idx)
            let remote = runs[idx..<(idx + n)].map {
                iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.start)), iov_len: Int($0.length))
            }
            let want = remote.reduce(0) { $0 + $1.iov_len }
            var l = iovec(iov_base: buf + local, iov_len: want)
            let got = remote.withUnsafeBufferPointer { rp in
                withUnsafePointer(to: &l) { lp in
                    ck_syscall6(SyscallNumber.processVmWritev.rawValue, Int(pid), Int(bitPattern: lp), 1,
                                Int(bitPattern: rp.baseAddress!), n, 0)
                }
            }
            guard got == want else {
                throw RestoreError.layout(pid: pid, reason: "filling memory near 0x\(String(runs[idx].start, radix: 16)): wrote \(got) of \(want) bytes (errno \(ck_errno()))")
            }
            local += want
            idx += n
        }
    }
}

/// What the reading and the filling thread share; the semaphores order every access.
final class FillState: @unchecked Sendable {
    var error: Error?
    var readFailed = false
    let filled = DispatchSemaphore(value: 0)
    let free = DispatchSemaphore(value: 2)
}
