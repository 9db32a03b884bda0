import CKernel
import Glibc

/// Fills a task's memory from a pages file, following its pagemap: large sequential reads of
/// the file, then process_vm_writev with many target ranges per call.
struct PageFiller {
    let pid: Int32
    let bufferSize = 32 << 20

    func fill(entries: [Img_PagemapEntry], pagesFd: Int32, pagesFile: String) throws {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buf.deallocate() }
        var fileOffset: UInt64 = 0
        var pending: [PageRun] = []
        var pendingBytes = 0

        func flush() throws {
            guard pendingBytes > 0 else { return }
            var done = 0
            while done < pendingBytes {
                let n = pread(pagesFd, buf + done, pendingBytes - done, off_t(fileOffset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw ImageError.truncated(file: pagesFile, offset: Int(fileOffset) + done, needed: pendingBytes - done, available: 0)
                }
                done += n
            }
            var idx = 0
            var local = 0
            while idx < pending.count {
                let n = min(1024, pending.count - idx)
                let remote = pending[idx..<(idx + n)].map {
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
                    throw RestoreError.layout(pid: pid, reason: "filling memory near 0x\(String(pending[idx].start, radix: 16)): wrote \(got) of \(want) bytes (errno \(ck_errno()))")
                }
                local += want
                idx += n
            }
            fileOffset += UInt64(pendingBytes)
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }

        for e in entries {
            if e.inParent { throw RestoreError.unsupported("in_parent pages (restore from a snapshot chain)") }
            var start = e.vaddr
            var left = UInt64(e.nrPages) * pageSize
            while left > 0 {
                let room = UInt64(bufferSize - pendingBytes)
                if room == 0 { try flush(); continue }
                let take = min(room, left)
                pending.append(PageRun(start: start, end: start + take))
                pendingBytes += Int(take)
                start += take
                left -= take
            }
        }
        try flush()
    }
}
