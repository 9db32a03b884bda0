import CKernel
import Glibc

/// A thread's scheduling state: policy and real-time priority, nice, timer slack and I/O
/// priority. Policy, nice and ioprio are read and set from cryo by thread id (as root, with
/// CAP_SYS_NICE); timer slack only the thread itself can read or set, through injection.
enum Scheduling {
    static let resetOnFork: UInt32 = 0x4000_0000
    static let deadline: UInt32 = 6
    static let ioprioWhoProcess = 1
    static let prGetTimerslack: UInt64 = 30, prSetTimerslack: UInt64 = 29

    struct State: Equatable {
        var policy: UInt32
        var prio: UInt32
        var nice: Int32
        var ioprio: UInt32
    }

    static func read(tid: Int32) throws -> State {
        let policy = try Sys.call(.schedGetscheduler, Int(tid), context: "tid \(tid)")
        guard UInt32(policy) & ~resetOnFork != deadline else {
            throw DumpError.unsupported(pid: tid, what: "scheduling policy SCHED_DEADLINE")
        }
        var param: Int32 = 0
        try withUnsafeMutablePointer(to: &param) { p in
            _ = try Sys.call(.schedGetparam, Int(tid), Int(bitPattern: p), context: "tid \(tid)")
        }
        // The raw call answers 20 - nice, so that no nice is negative.
        let raw = try Sys.call(.getpriority, Int(PRIO_PROCESS.rawValue), Int(tid), context: "tid \(tid)")
        let io = try Sys.call(.ioprioGet, ioprioWhoProcess, Int(tid), context: "tid \(tid)")
        return State(policy: UInt32(policy), prio: UInt32(bitPattern: param), nice: Int32(20 - raw), ioprio: UInt32(io))
    }

    static func names(_ policy: UInt32) -> String {
        let base = ["SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO", "SCHED_IDLE", "SCHED_DEADLINE"]
        let p = Int(policy & ~resetOnFork)
        return (p < base.count ? base[p] : "policy \(p)") + (policy & resetOnFork != 0 ? "|SCHED_RESET_ON_FORK" : "")
    }

    /// Sets what differs from the thread's present state, then reads it back: a value the
    /// kernel did not take fails the restore rather than leaving the thread different.
    static func apply(tid: Int32, _ core: Img_ThreadCoreEntry) throws {
        guard core.hasSchedPolicy else { return }
        let want = State(policy: core.schedPolicy, prio: core.schedPrio, nice: core.schedNice, ioprio: core.hasIoprio ? core.ioprio : 0)
        let now = try read(tid: tid)
        if now.policy != want.policy || now.prio != want.prio {
            var param = Int32(bitPattern: want.prio)
            try withUnsafeMutablePointer(to: &param) { p in
                _ = try Sys.call(.schedSetscheduler, Int(tid), Int(want.policy), Int(bitPattern: p), context: "tid \(tid): \(names(want.policy)) priority \(want.prio)")
            }
        }
        if now.nice != want.nice {
            _ = try Sys.call(.setpriority, Int(PRIO_PROCESS.rawValue), Int(tid), Int(want.nice), context: "tid \(tid): nice \(want.nice)")
        }
        if core.hasIoprio && now.ioprio != want.ioprio {
            _ = try Sys.call(.ioprioSet, ioprioWhoProcess, Int(tid), Int(want.ioprio), context: "tid \(tid): ioprio \(want.ioprio)")
        }
        var got = try read(tid: tid)
        if !core.hasIoprio { got.ioprio = 0 }
        guard got == want else {
            throw RestoreError.unsupported("tid \(tid): scheduling came back as \(names(got.policy)) prio \(got.prio) nice \(got.nice) ioprio \(got.ioprio), not \(names(want.policy)) prio \(want.prio) nice \(want.nice) ioprio \(want.ioprio)")
        }
    }
}
