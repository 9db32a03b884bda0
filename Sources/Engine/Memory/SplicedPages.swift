import CKernel
import Glibc
import Logging

/// A dump's pages sent without a copy on our side: the frozen task itself vmsplices its pages
/// into pipes (a loop of injected syscalls, as CRIU's parasite does), and cryo splices the pipes
/// on: into a page server's socket, a stream, the image proxy's socket, or a pages file. The
/// bytes leave by reference and are first copied where they are stored (process_vm_readv then
/// write copied each page twice). The tree stays frozen until the server answered CLOSE or the
/// store committed, and a store that may still refer to the pages after that (a stream's pipe)
/// gets them only from a tree the dump kills (`usable`). A pre-dump, whose task runs while its
/// pages travel, keeps copying.
public struct SplicedPages {
    let proc: ProcReader
    let log = Logger(label: "dump")
    /// vmsplice takes at most UIO_MAXIOV iovecs.
    static let maxIovecs = 1024
    /// Pipes the task fills per wake-up (TrampolineLoop); 1 (or 0) injects one vmsplice per
    /// pipeful instead, as before the loop (cryo-bench compares the two).
    public nonisolated(unsafe) static var loopPipes = 16

    public init(proc: ProcReader) { self.proc = proc }

    /// Below this a task's pages go through PageCopier, which overlaps them with the next
    /// task's dump: lending the task pipes costs more than copying a few MiB. A page server's
    /// socket takes one sink at a time, so there every task splices (the copier would run
    /// beside it).
    static let minBytes: UInt64 = 8 << 20
    public static func splices(_ job: PageJob, to transport: PageTransport) -> Bool {
        transport is PageServerTransport || job.readableBytes >= minBytes
    }

    /// A page server's socket, and stores whose writers splice (a stream, the image proxy). The
    /// tree stays frozen until a page server answered CLOSE or the store committed, so a page
    /// changes only after its bytes are stored; a store that may still hold references then (a
    /// stream's pipe) takes spliced pages only from a tree the dump kills.
    public static func usable(for transport: PageTransport, leave: DumpRequest.Leave) -> Bool {
        if transport is PageServerTransport { return true }
        guard let local = transport as? LocalPageTransport, let store = local.images.store as? SplicingImageStore else { return false }
        return store.storesBeforeCommit || leave == .killed
    }

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
        let want = max(1, SplicedPages.loopPipes)
        let tableBytes = TrampolineLoop.headerBytes + want * TrampolineLoop.entryBytes
        let iovPerPipe = SplicedPages.maxIovecs
        let tableAt = try remote.scratch(size: tableBytes + want * iovPerPipe * 16 + 8)
        let iovAt = tableAt + UInt64(tableBytes)
        let fdsAt = iovAt + UInt64(want * iovPerPipe * 16)
        // Every end the task holds, for closing if no trampoline takes them over.
        var taskFds: [UInt32] = []
        var endsOpen = true
        defer { if endsOpen { for fd in taskFds.reversed() { _ = try? remote.syscall(.close, UInt64(fd)) } } }
        func taskPipe() throws -> (r: UInt32, w: UInt32) {
            try remote.syscall(.pipe2, fdsAt, UInt64(O_CLOEXEC))
            let fds = try remote.readMemory(at: fdsAt, count: 8)
            taskFds += [fds.u32(at: 0), fds.u32(at: 4)]
            return (fds.u32(at: 0), fds.u32(at: 4))
        }
        let first: (r: UInt32, w: UInt32)
        do { first = try taskPipe() } catch {
            log.info("pid \(job.pid): no pipe in the task (\(error)): its pages are copied")
            return try PageCopier(bufferSize: 4 << 20).copy([job])
        }
        let pidfd = try Sys.pidfdOpen(job.pid)
        defer { close(pidfd) }
        var cryoFds: [Int32] = []
        defer { for fd in cryoFds { close(fd) } }
        func take(_ fd: UInt32, _ what: String) throws -> Int32 {
            let mine = try Sys.pidfdGetfd(pidfd: pidfd, fd: Int32(bitPattern: fd), context: "pid \(job.pid) \(what)")
            cryoFds.append(mine)
            return mine
        }
        var pipes = [(inTask: first.w, mine: try take(first.r, "pages pipe"))]
        // The loop's pipes and the other pages pipes; with fewer (a full fd table), fewer.
        var loop: (spec: TrampolineLoop.Spec, go: Int32, ack: Int32)?
        if want > 1, let ack = try? taskPipe(), let go = try? taskPipe() {
            let ackMine = try take(ack.r, "ack pipe"), goMine = try take(go.w, "go pipe")
            // The go pipe's write end is cryo's alone, so the task's read ends with cryo.
            try remote.syscall(.close, UInt64(go.w))
            taskFds.removeAll { $0 == go.w }
            loop = (TrampolineLoop.Spec(ackWrite: ack.w, goRead: go.r, table: tableAt), goMine, ackMine)
            while pipes.count < want, let p = try? taskPipe() { pipes.append((p.w, try take(p.r, "pages pipe"))) }
        }
        // From here the task waits only at the trampoline, from which a cryo that dies sends it home.
        guard let lent = remote.scratchRange else { throw RemoteError.didNotExecute(tid: job.pid, call: "scratch", rip: 0) }
        // The task keeps the read ends too: a vmsplice it runs after cryo died (and with it
        // cryo's read end) would otherwise raise SIGPIPE.
        let trampoline = try ReturnTrampoline(remote: remote, fds: taskFds, scratch: lent, loop: loop?.spec)
        endsOpen = false
        defer { try? trampoline.close() }
        let pipe = pipes[0].mine, writeInTask = pipes[0].inTask
        let capacity = pipes.map { PipeSize.grow($0.mine) }.min()!
        log.debug("pid \(job.pid): pages go through \(pipes.count) pipe(s) of \(capacity) bytes\(trampoline.canLoop ? ", the task vmsplicing into all of them per wake-up" : "")")
        var mem: Int32 = -1
        defer { if mem >= 0 { close(mem) } }
        for b in SplicedPages.sparing(job.batches, SplicedPages.kernelWritten(tid: job.pid)) {
            if b.readable {
                if let loop, trampoline.canLoop {
                    try spliceLooping(b.runs, remote: remote, trampoline: trampoline, pipes: pipes, loop: (loop.go, loop.ack), table: tableAt, iovAt: iovAt, capacity: capacity, stream: job.stream)
                } else {
                    try splice(b.runs, remote: remote, trampoline: trampoline, pipe: pipe, pipeInTask: writeInTask, iovAt: iovAt, capacity: capacity, stream: job.stream)
                }
                continue
            }
            // PROT_NONE, exec-only, shared copy-on-write with a child, or the rseq page: /proc/PID/mem, copied.
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

    /// The runs, up to a pipeful per pipe, every pipe per wake-up: the task's loop vmsplices
    /// them all (TrampolineLoop), then the stream splices each pipe out in turn.
    func spliceLooping(_ runs: [PageRun], remote: Remote, trampoline: ReturnTrampoline, pipes: [(inTask: UInt32, mine: Int32)],
                       loop: (go: Int32, ack: Int32), table: UInt64, iovAt: UInt64, capacity: Int, stream: PageStream) throws {
        var queue = runs
        var qi = 0
        while qi < queue.count {
            var batch: [[PageRun]] = []
            var bytes: [Int] = []
            while batch.count < pipes.count && qi < queue.count {
                var part: [PageRun] = []
                var n = 0
                while qi < queue.count && n < capacity && part.count < SplicedPages.maxIovecs {
                    let r = queue[qi]
                    let take = min(r.length, UInt64(capacity - n))
                    part.append(PageRun(start: r.start, end: r.start + take))
                    n += Int(take)
                    if take == r.length { qi += 1 } else { queue[qi].start += take }
                }
                batch.append(part)
                bytes.append(n)
            }
            // The table and every iovec in one write: count, entries, then the iovecs packed.
            var t: [UInt8] = []
            t.reserveCapacity(8 + batch.count * TrampolineLoop.entryBytes + batch.reduce(0) { $0 + $1.count * 16 })
            t.putU64(UInt64(batch.count))
            var iov = iovAt
            for (i, part) in batch.enumerated() {
                t.putU64(UInt64(pipes[i].inTask)); t.putU64(iov); t.putU64(UInt64(part.count)); t.putU64(0)
                iov += UInt64(part.count * 16)
            }
            for part in batch { for r in part { t.putU64(r.start); t.putU64(r.length) } }
            let entriesEnd = 8 + batch.count * TrampolineLoop.entryBytes
            try remote.writeMemory(Array(t[0..<entriesEnd]), at: table + 8)
            try remote.writeMemory(Array(t[entriesEnd...]), at: iovAt)
            try trampoline.runLoop(go: loop.go, ack: loop.ack)
            let res = try remote.readMemory(at: table + UInt64(TrampolineLoop.headerBytes), count: batch.count * TrampolineLoop.entryBytes)
            let moved = (0..<batch.count).map { Int64(bitPattern: res.u64(at: $0 * TrampolineLoop.entryBytes + 24)) }
            for i in 0..<batch.count {
                let k = moved[i]
                if k < 0 { throw RemoteError.syscallFailed(tid: remote.tid, call: "vmsplice", errno: Int32(-k)) }
                guard k > 0 else { throw DumpError.memoryChanged(pid: remote.tid, detail: "vmsplice of its pages moved nothing") }
                try stream.splice(from: pipes[i].mine, Int(k))
                if Int(k) < bytes[i] {
                    // The later pipes hold pages after a gap: they are dropped and go again.
                    for j in (i + 1)..<batch.count where moved[j] > 0 { try SplicedPages.drain(pipes[j].mine, Int(moved[j])) }
                    queue = SplicedPages.skip(Int(k), of: batch[i]) + batch[(i + 1)...].flatMap { $0 } + queue[qi...]
                    qi = 0
                    break
                }
            }
        }
    }

    /// Where the kernel writes in the memory of the task that runs the loop while its pages are
    /// still referenced from a pipe: its rseq area (cpu_id and the rest, on each return to user
    /// space). A stream's CRC, taken when the pages are spliced, would not match what its reader
    /// copies later.
    static func kernelWritten(tid: Int32) -> PageRun? {
        guard let rs = try? Ptrace.rseqConfiguration(tid), rs.pointer != 0 else { return nil }
        let start = rs.pointer & ~(pageSize - 1)
        let end = (rs.pointer + UInt64(max(rs.size, 32)) + pageSize - 1) & ~(pageSize - 1)
        return PageRun(start: start, end: end)
    }

    /// `batches`, in the same order, with the pages of `spared` taken out of the spliced ones
    /// into batches of their own that are copied (read through /proc/PID/mem when their turn comes).
    static func sparing(_ batches: [(runs: [PageRun], readable: Bool)], _ spared: PageRun?) -> [(runs: [PageRun], readable: Bool)] {
        guard let v = spared else { return batches }
        var out: [(runs: [PageRun], readable: Bool)] = []
        for b in batches {
            guard b.readable, b.runs.contains(where: { $0.start < v.end && v.start < $0.end }) else { out.append(b); continue }
            var cur: [PageRun] = []
            for r in b.runs {
                guard r.start < v.end && v.start < r.end else { cur.append(r); continue }
                if r.start < v.start { cur.append(PageRun(start: r.start, end: v.start)) }
                if !cur.isEmpty { out.append((cur, true)); cur = [] }
                out.append(([PageRun(start: max(r.start, v.start), end: min(r.end, v.end))], false))
                if v.end < r.end { cur.append(PageRun(start: v.end, end: r.end)) }
            }
            if !cur.isEmpty { out.append((cur, true)) }
        }
        return out
    }

    /// Reads and drops `n` bytes from `pipe`.
    static func drain(_ pipe: Int32, _ n: Int) throws {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: imagePageSize)
        defer { buf.deallocate() }
        var left = n
        while left > 0 {
            let r = Glibc.read(pipe, buf, min(left, 1 << 16))
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw SystemCallError(call: "read", errno: r < 0 ? errno : EPIPE, context: "draining a pages pipe") }
            left -= r
        }
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
