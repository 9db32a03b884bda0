import CKernel
import Glibc
import Logging

/// A dump's pages sent to a page server without a copy on our side: the frozen task itself
/// vmsplices its pages into a pipe (one injected syscall per pipeful, as CRIU's parasite
/// does), and cryo splices the pipe into the socket, so the bytes leave by reference and are
/// first copied where the server stores them. process_vm_readv then send() copied each page
/// twice. The tree stays frozen until the server has answered CLOSE (everything stored), so no
/// page changes while the pipe or the socket still refers to it; a pre-dump, whose task runs
/// while its pages travel, keeps copying.
public struct SplicedPages {
    let proc: ProcReader
    let log = Logger(label: "dump")
    /// vmsplice takes at most UIO_MAXIOV iovecs.
    static let maxIovecs = 1024

    public init(proc: ProcReader) { self.proc = proc }

    /// Only a page server's socket takes spliced pages; other transports store what they get.
    public static func usable(for transport: PageTransport) -> Bool { transport is PageServerTransport }

    /// Sends `job`'s pages in pagemap order through its stream, and finishes the stream.
    /// Without a pipe in the task (its fd table full, say) the pages are copied as before.
    public func send(_ job: PageJob) throws {
        guard job.batches.contains(where: { $0.readable && !$0.runs.isEmpty }) else { return try PageCopier(bufferSize: 4 << 20).copy([job]) }
        let maps = try proc.maps(pid: job.pid)
        // Without a vDSO, injecting writes a `syscall` into the task's text until finish():
        // a page spliced by reference would carry it (a copy is taken after it is put back).
        guard Remote.findSyscallInstruction(tid: job.pid, maps: maps) != nil else {
            log.info("pid \(job.pid): no vDSO to inject through: its pages are copied")
            return try PageCopier(bufferSize: 4 << 20).copy([job])
        }
        guard ReturnTrampoline.usable(pid: job.pid, proc: proc) else {
            log.info("pid \(job.pid): a shadow stack (no way back through sigreturn): its pages are copied")
            return try PageCopier(bufferSize: 4 << 20).copy([job])
        }
        let remote = try Remote(tid: job.pid, maps: maps)
        defer { try? remote.finish() }
        let iovAt = try remote.scratch(size: SplicedPages.maxIovecs * 16 + 8)
        let fdsAt = iovAt + UInt64(SplicedPages.maxIovecs * 16)
        do {
            try remote.syscall(.pipe2, fdsAt, UInt64(O_CLOEXEC))
        } catch {
            log.info("pid \(job.pid): no pipe in the task (\(error)): its pages are copied")
            return try PageCopier(bufferSize: 4 << 20).copy([job])
        }
        let fds = try remote.readMemory(at: fdsAt, count: 8)
        let readInTask = fds.u32(at: 0), writeInTask = fds.u32(at: 4)
        var endsOpen = true  // until the trampoline takes them over
        defer { if endsOpen { _ = try? remote.syscall(.close, UInt64(writeInTask)); _ = try? remote.syscall(.close, UInt64(readInTask)) } }
        let pidfd = try Sys.pidfdOpen(job.pid)
        defer { close(pidfd) }
        let pipe = try Sys.pidfdGetfd(pidfd: pidfd, fd: Int32(bitPattern: readInTask), context: "pid \(job.pid) pages pipe")
        defer { close(pipe) }
        // From here the task waits only at the trampoline, from which a cryo that dies sends it home.
        guard let lent = remote.scratchRange else { throw RemoteError.didNotExecute(tid: job.pid, call: "scratch", rip: 0) }
        // The task keeps the read end too: a vmsplice it runs after cryo died (and with it
        // cryo's read end) would otherwise raise SIGPIPE.
        let trampoline = try ReturnTrampoline(remote: remote, fds: [writeInTask, readInTask], scratch: lent)
        endsOpen = false
        defer { try? trampoline.close() }
        let capacity = PipeSize.grow(pipe)
        log.debug("pid \(job.pid): pages go through a pipe of \(capacity) bytes")
        var mem: Int32 = -1
        defer { if mem >= 0 { close(mem) } }
        for b in job.batches {
            if b.readable {
                try splice(b.runs, remote: remote, trampoline: trampoline, pipe: pipe, pipeInTask: writeInTask, iovAt: iovAt, capacity: capacity, stream: job.stream)
                continue
            }
            // PROT_NONE, exec-only, or shared copy-on-write with a child: /proc/PID/mem, copied.
            if mem < 0 {
                mem = open("/proc/\(job.pid)/mem", O_RDONLY | O_CLOEXEC)
                guard mem >= 0 else { throw SystemCallError(call: "open", errno: errno, context: "/proc/\(job.pid)/mem") }
            }
            let buf = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: imagePageSize)
            defer { buf.deallocate() }
            for r in b.runs {
                var at = r.start
                while at < r.end {
                    let n = Int(min(UInt64(capacity), r.end - at))
                    guard pread(mem, buf, n, off_t(Int64(bitPattern: at))) == n else {
                        throw DumpError.memoryChanged(pid: job.pid, detail: "short read of \(n) bytes at 0x\(String(at, radix: 16)) through /proc/\(job.pid)/mem")
                    }
                    try job.stream.write(buf, n)
                    at += UInt64(n)
                }
            }
        }
        // The task home and parked before the stream waits on the server.
        try trampoline.close()
        try remote.finish()
        try job.stream.finish()
    }

    /// The runs, a pipeful at a time: the task vmsplices them into the pipe, the stream
    /// splices them out.
    func splice(_ runs: [PageRun], remote: Remote, trampoline: ReturnTrampoline, pipe: Int32, pipeInTask: UInt32, iovAt: UInt64, capacity: Int, stream: PageStream) throws {
        var pending: [PageRun] = []
        var bytes = 0
        func flush() throws {
            var left = pending
            while !left.isEmpty {
                var iov: [UInt8] = []
                iov.reserveCapacity(left.count * 16)
                for r in left { iov.putU64(r.start); iov.putU64(r.length) }
                try remote.writeMemory(iov, at: iovAt)
                // Non-blocking, at most what the pipe holds: the call returns at once.
                let r = try trampoline.call(.vmsplice, UInt64(pipeInTask), iovAt, UInt64(left.count), 2 /* SPLICE_F_NONBLOCK */)
                if r < 0 { throw RemoteError.syscallFailed(tid: remote.tid, call: "vmsplice", errno: Int32(-r)) }
                let k = Int(r)
                guard k > 0 else { throw DumpError.memoryChanged(pid: remote.tid, detail: "vmsplice of its pages moved nothing") }
                try stream.splice(from: pipe, k)
                left = SplicedPages.skip(k, of: left)
            }
            pending = []
            bytes = 0
        }
        for var r in runs {
            while r.length > 0 {
                let take = min(r.length, UInt64(capacity - bytes))
                pending.append(PageRun(start: r.start, end: r.start + take))
                bytes += Int(take)
                r.start += take
                if bytes == capacity || pending.count == SplicedPages.maxIovecs { try flush() }
            }
        }
        if !pending.isEmpty { try flush() }
    }

    /// `runs` without their first `n` bytes.
    static func skip(_ n: Int, of runs: [PageRun]) -> [PageRun] {
        var left = UInt64(n)
        var out: [PageRun] = []
        for r in runs {
            if left >= r.length { left -= r.length; continue }
            out.append(PageRun(start: r.start + left, end: r.end))
            left = 0
        }
        return out
    }
}
