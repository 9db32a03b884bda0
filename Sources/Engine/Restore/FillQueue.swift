import Foundation

/// Fills tasks' memory on a worker thread, in the order submitted, while the tracer rebuilds
/// the next task: filling is the bulk of a restore and needs no ptrace. The tracer waits for a
/// task's fill before anything that needs its memory complete: forking its children (they must
/// inherit the pages) and setting the final protections.
final class FillQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var jobs: [(pid: Int32, work: () throws -> Void)] = []
    private var done: Set<Int32> = []
    private var pending: Set<Int32> = []
    private var failure: Error?
    private let wake = DispatchSemaphore(value: 0)
    private let progress = NSCondition()
    private var worker: Thread?
    private var closing = false

    func submit(pid: Int32, _ work: @escaping () throws -> Void) {
        lock.lock()
        jobs.append((pid, work))
        pending.insert(pid)
        lock.unlock()
        if worker == nil {
            let t = Thread { [self] in run() }
            worker = t
            t.start()
        }
        wake.signal()
    }

    private func run() {
        while true {
            wake.wait()
            lock.lock()
            if jobs.isEmpty && closing { lock.unlock(); break }
            guard !jobs.isEmpty else { lock.unlock(); continue }
            let job = jobs.removeFirst()
            let skip = failure != nil
            lock.unlock()
            var err: Error?
            if !skip { do { try job.work() } catch { err = error } }
            progress.lock()
            lock.lock()
            if let err, failure == nil { failure = err }
            pending.remove(job.pid)
            done.insert(job.pid)
            lock.unlock()
            progress.broadcast()
            progress.unlock()
        }
        progress.lock()
        progress.broadcast()
        progress.unlock()
    }

    /// Waits until `pid`'s memory is filled (or anything failed); throws the first failure.
    func wait(_ pid: Int32) throws {
        progress.lock()
        while true {
            lock.lock()
            let ready = !pending.contains(pid) || failure != nil
            let f = failure
            lock.unlock()
            if ready { progress.unlock(); if let f { throw f }; return }
            progress.wait()
        }
    }

    /// Waits for every fill; throws the first failure.
    func waitAll() throws {
        lock.lock()
        let all = pending
        lock.unlock()
        for pid in all { try wait(pid) }
        lock.lock()
        let f = failure
        lock.unlock()
        if let f { throw f }
    }

    /// After a failure: skips what is queued and waits for a fill in progress, so that nothing
    /// writes into tasks that are about to be killed.
    func close() {
        lock.lock()
        closing = true
        if !jobs.isEmpty && failure == nil { failure = RestoreError.unsupported("restore abandoned") }
        lock.unlock()
        wake.signal()
        progress.lock()
        while true {
            lock.lock()
            let left = pending.count
            lock.unlock()
            if left == 0 { break }
            progress.wait()
        }
        progress.unlock()
    }
}
