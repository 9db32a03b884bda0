import Glibc

/// A thread's timer slack is two values: the current one (PR_GET_TIMERSLACK) and the default
/// that prctl(PR_SET_TIMERSLACK, 0) resets it to. The kernel sets the default only at clone,
/// to the creating thread's current slack, and shows it nowhere: only resetting to it does.
/// A real-time thread's slack is 0 and prctl leaves it alone; when the thread leaves its
/// real-time policy the kernel gives it its default again.
enum TimerSlack {
    static let get = Scheduling.prGetTimerslack, set = Scheduling.prSetTimerslack
    static let fifo: UInt32 = 1

    static func isRealTime(_ policy: UInt32) -> Bool { [1, 2, 6].contains(policy & ~Scheduling.resetOnFork) }

    /// Both values of a stopped thread, which is left exactly as it was (or the dump fails,
    /// naming it, if its slack or policy could not be put back).
    static func read(tid: Int32, remote: Remote, sched: Scheduling.State) throws -> (current: UInt64, default: UInt64) {
        let current = try remote.syscall(.prctl, get)
        if isRealTime(sched.policy) {
            return (current, try outsideRealTime(tid: tid, sched) { try remote.syscall(.prctl, get) })
        }
        // A thread outside real time has slack 0 only when its default is 0.
        if current == 0 { return (0, 0) }
        let def: UInt64
        do {
            try remote.syscall(.prctl, set, 0)
            def = try remote.syscall(.prctl, get)
        } catch {
            _ = try? remote.syscall(.prctl, set, current)
            throw error
        }
        try remote.syscall(.prctl, set, current)
        let back = try remote.syscall(.prctl, get)
        guard back == current else { throw DumpError.unsupported(pid: tid, what: "timer slack (left at \(back) ns, not \(current), after reading its default)") }
        return (current, def)
    }

    /// `body` runs while thread `tid` is SCHED_OTHER (its slack then is its default); then
    /// the policy and priority it had are put back and checked.
    static func outsideRealTime<T>(tid: Int32, _ s: Scheduling.State, _ body: () throws -> T) throws -> T {
        try setPolicy(tid, 0, 0)
        let r: T
        do { r = try body() } catch {
            try? setPolicy(tid, s.policy, s.prio)
            throw error
        }
        try setPolicy(tid, s.policy, s.prio)
        let now = try Scheduling.read(tid: tid)
        guard now == s else {
            throw DumpError.unsupported(pid: tid, what: "scheduling policy (left as \(Scheduling.names(now.policy)) priority \(now.prio), not \(Scheduling.names(s.policy)) priority \(s.prio), after reading its default timer slack)")
        }
        return r
    }

    static func setPolicy(_ tid: Int32, _ policy: UInt32, _ prio: UInt32) throws {
        var param = Int32(bitPattern: prio)
        try withUnsafeMutablePointer(to: &param) { p in
            _ = try Sys.call(.schedSetscheduler, Int(tid), Int(policy), Int(bitPattern: p), context: "tid \(tid): \(Scheduling.names(policy)) priority \(prio)")
        }
    }
}
