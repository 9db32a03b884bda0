import CKernel
import Glibc

/// The default timer slack exists only from clone: a task is given its dumped default by
/// having the thread that clones it take that as its current slack for the clone.
extension Restorer {
    /// A thread whose slack cryo sets: cryo's own (for the root) or one of the tree's.
    struct SlackCloner {
        let tid: Int32
        let name: String
        let prctl: (UInt64, UInt64) throws -> UInt64

        static func remote(_ r: Remote) -> SlackCloner {
            SlackCloner(tid: r.tid, name: "tid \(r.tid)") { try r.syscall(.prctl, $0, $1) }
        }

        static func own() -> SlackCloner {
            let tid = Int32(ck_syscall6(SyscallNumber.gettid.rawValue, 0, 0, 0, 0, 0, 0))
            return SlackCloner(tid: tid, name: "cryo's thread \(tid)") { UInt64(try Sys.call(.prctl, Int($0), Int($1), context: "timer slack")) }
        }
    }

    /// Runs `clone` with `cloner`'s current slack at the child's dumped default, then puts
    /// the cloner's own back. A default of 0 (the child of a real-time thread) comes from a
    /// cloner made SCHED_FIFO with SCHED_RESET_ON_FORK for the clone: its child runs
    /// SCHED_OTHER (its nice reset to 0; both are set as dumped later, with every thread's).
    func cloning<T>(_ child: Img_ThreadCoreEntry, from cloner: SlackCloner, _ clone: () throws -> T) throws -> T {
        guard child.hasTimerslackDefaultNs else { return try clone() }
        let want = child.timerslackDefaultNs
        let saved = try cloner.prctl(TimerSlack.get, 0)
        if saved == want { return try clone() }
        var realTime: Scheduling.State?
        _ = try cloner.prctl(TimerSlack.set, want)  // 0: the cloner's own default
        if try cloner.prctl(TimerSlack.get, 0) != want {
            guard want == 0 else { throw RestoreError.unsupported("\(cloner.name): timer slack \(want) ns, the default its clone must get, did not take (a real-time thread?)") }
            realTime = try Scheduling.read(tid: cloner.tid)
            try TimerSlack.setPolicy(cloner.tid, TimerSlack.fifo | Scheduling.resetOnFork, 1)
        }
        func putBack() throws {
            if let s = realTime { try TimerSlack.setPolicy(cloner.tid, s.policy, s.prio) }
            _ = try cloner.prctl(TimerSlack.set, saved)
            let got = try cloner.prctl(TimerSlack.get, 0)
            guard got == saved else { throw RestoreError.unsupported("\(cloner.name): timer slack came back as \(got) ns, not \(saved), after a clone") }
        }
        let r: T
        do { r = try clone() } catch {
            try? putBack()
            throw error
        }
        try putBack()
        return r
    }

    /// Reads the default back (resetting to it), then sets the current slack.
    func restoreTimerSlacks(_ t: RestoreTarget, _ th: Img_ThreadCoreEntry) throws {
        if th.hasTimerslackDefaultNs {
            try t.remote.syscall(.prctl, TimerSlack.set, 0)
            let got = try t.remote.syscall(.prctl, TimerSlack.get)
            guard got == th.timerslackDefaultNs else { throw RestoreError.unsupported("tid \(t.pid): default timer slack came back as \(got) ns, not \(th.timerslackDefaultNs)") }
        }
        if th.timerslackNs > 0 { try restoreTimerSlack(t, th.timerslackNs) }
    }
}
