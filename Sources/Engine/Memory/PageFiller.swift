import CKernel
import Glibc

/// Fills a task's memory from the pages files of a snapshot chain: large reads of each file,
/// then process_vm_writev with many target ranges per call.
struct PageFiller {
    let pid: Int32
    let bufferSize = 32 << 20

    /// Fills from a snapshot chain: each segment's bytes come from the newest snapshot holding
    /// them. Segments are in address order; every file is read sequentially within itself.
    func fill(from sources: PageSources) throws {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buf.deallocate() }
        var pending: [PageRun] = []
        var pendingBytes = 0

        func flush() throws {
            guard pendingBytes > 0 else { return }
            try writeOut(pending, from: buf, bytes: pendingBytes)
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }

        for s in sources.segments {
            guard let (fd, file) = sources.fd(for: s), let src = s.source else { continue }
            var start = s.vaddr
            var fileOffset = src.offset
            var left = s.byteCount
            while left > 0 {
                let room = bufferSize - pendingBytes
                if room == 0 { try flush(); continue }
                let take = min(room, left)
                var done = 0
                while done < take {
                    let n = pread(fd, buf + pendingBytes + done, take - done, off_t(fileOffset + done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else {
                        throw ImageError.truncated(file: file, offset: fileOffset + done, needed: take - done, available: 0)
                    }
                    done += n
                }
                pending.append(PageRun(start: start, end: start + UInt64(take)))
                pendingBytes += take
                start += UInt64(take)
                fileOffset += take
                left -= take
            }
        }
        try flush()
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
