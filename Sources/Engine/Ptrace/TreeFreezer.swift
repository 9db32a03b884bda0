import CKernel
import Glibc
import Logging

public enum FreezeError: Error, CustomStringConvertible {
    case rootGone(pid: Int32)
    /// The root exited (a zombie) before it was frozen: nothing left to dump.
    case rootExited(pid: Int32)
    case unexpectedStop(tid: Int32, status: WaitStatus)
    case unstable(pid: Int32, rounds: Int)
    case unsupportedStop(tid: Int32, signal: Int32)

    public var description: String {
        switch self {
        case .rootGone(let pid): return "process \(pid) does not exist"
        case .rootExited(let pid): return "process \(pid) exited before it could be frozen (a zombie): nothing to dump"
        case .unexpectedStop(let tid, let st): return "tid \(tid): unexpected stop while freezing: \(st)"
        case .unstable(let pid, let rounds): return "tree of \(pid) still changing after \(rounds) rounds of freezing"
        case .unsupportedStop(let tid, let sig):
            return "tid \(tid) is stopped by signal \(sig) (\(String(cString: strsignal(sig)))); cryo restores tasks stopped by SIGSTOP or SIGTSTP only"
        }
    }
}

/// One process of a frozen tree.
public struct FrozenProcess: Sendable {
    public let pid: Int32
    public var threads: [Int32]
    public var children: [Int32]
    /// Already a zombie: nothing to seize, only its exit code to record.
    public var isZombie: Bool
    /// The signal that had stopped the process (SIGSTOP, SIGTSTP) before we came, or 0: a
    /// stopped process is stopped again when released, and restored stopped.
    public var stopSignal: Int32
    public var wasStopped: Bool { stopSignal != 0 }
}

/// A process tree held in ptrace stops. Every thread is seized and interrupted, and the set was
/// re-read until no new thread or child appeared. Detaches everything it seized on `release`,
/// and in deinit as a last resort, so an error path never leaves a task traced.
public final class FrozenTree: @unchecked Sendable {
    public let root: Int32
    public private(set) var processes: [FrozenProcess] = []
    private var seized: [Int32] = []
    private var released = false
    private let log = Logger(label: "freeze")

    init(root: Int32) { self.root = root }

    public func process(_ pid: Int32) -> FrozenProcess? { processes.first { $0.pid == pid } }

    /// Detaches every thread. `signal` is delivered to each process leader (e.g. SIGKILL after a
    /// dump); pass 0 to let the tree run on.
    public func release(killing: Bool = false, leaveStopped: Bool = false) {
        guard !released else { return }
        released = true
        for p in processes where !p.isZombie {
            if killing { kill(p.pid, SIGKILL) }
            // Queued before the detach, the stop is taken before the task runs a user instruction.
            else if p.wasStopped { kill(p.pid, p.stopSignal) }
            else if leaveStopped { kill(p.pid, SIGSTOP) }
        }
        for tid in seized.reversed() {
            do { try Ptrace.detach(tid) } catch {
                if !killing { log.warning("detach \(tid): \(error)") }
            }
        }
        seized.removeAll()
    }

    /// After release(killing:): until every process is dead or a zombie (a runtime checks
    /// right after the dump that its container is gone), for at most `seconds`. A thread that
    /// died before its detach is still traced by cryo: waited for here, it goes to its parent
    /// (the init of a pid namespace waits for every task of it before it dies itself).
    public func awaitDeath(seconds: Double = 5) {
        var left = Int(seconds * 500)
        let proc = ProcReader()
        let tids = processes.filter { !$0.isZombie }.flatMap { [$0.pid] + $0.threads }
        func reap() {
            var st: Int32 = 0
            for t in tids { _ = waitpid(t, &st, __WALL | WNOHANG) }
        }
        for p in processes where !p.isZombie {
            while left > 0, let st = try? proc.stat(pid: p.pid), !st.isZombie { reap(); usleep(2_000); left -= 1 }
        }
    }

    deinit { release() }

    fileprivate func add(_ p: FrozenProcess) { processes.append(p) }
    fileprivate func update(_ p: FrozenProcess) {
        if let i = processes.firstIndex(where: { $0.pid == p.pid }) { processes[i] = p }
    }
    fileprivate func noteSeized(_ tid: Int32) { seized.append(tid) }
    fileprivate func isSeized(_ tid: Int32) -> Bool { seized.contains(tid) }
    /// Tasks that died while seized: nothing to detach.
    fileprivate func forget(_ tids: [Int32]) { seized.removeAll { tids.contains($0) } }
    fileprivate func remove(_ pid: Int32) { processes.removeAll { $0.pid == pid } }
}

public enum TreeFreezer {
    static let maxRounds = 64

    /// Seizes and interrupts the whole tree rooted at `root`: all threads of all descendants,
    /// including tasks that appear while freezing.
    public static func freeze(root: Int32, proc: ProcReader = ProcReader()) throws -> FrozenTree {
        let tree = FrozenTree(root: root)
        let log = Logger(label: "freeze")
        do {
            guard kill(root, 0) == 0 else { throw FreezeError.rootGone(pid: root) }
            var queue: [Int32] = [root]
            var known: Set<Int32> = [root]
            while let pid = queue.first {
                queue.removeFirst()
                guard var p = try freezeProcess(pid, tree: tree, proc: proc, log: log) else { continue }
                // Children of a frozen process cannot change any more, except those forked just before
                // the freeze, which the children files already show.
                var kids: Set<Int32> = []
                for tid in p.threads {
                    for c in (try? proc.children(pid: pid, tid: tid)) ?? [] { kids.insert(c) }
                }
                p.children = kids.sorted()
                tree.update(p)
                for c in p.children where !known.contains(c) {
                    known.insert(c)
                    queue.append(c)
                }
            }
            // A root that died on the way (gone, or a zombie) leaves no tree to dump.
            guard let r = tree.process(root) else { throw FreezeError.rootGone(pid: root) }
            if r.isZombie { throw FreezeError.rootExited(pid: root) }
            log.debug("froze \(tree.processes.count) processes, \(tree.processes.reduce(0) { $0 + $1.threads.count }) threads")
            return tree
        } catch {
            tree.release()
            throw error
        }
    }

    /// Seizes every thread of one process, re-reading the task list until it is stable.
    /// Returns nil if the process vanished before it could be seized.
    static func freezeProcess(_ pid: Int32, tree: FrozenTree, proc: ProcReader, log: Logger) throws -> FrozenProcess? {
        let st: ProcStat
        do { st = try proc.stat(pid: pid) } catch { return pid == tree.root ? nil : nil }
        if st.isZombie {
            let p = FrozenProcess(pid: pid, threads: [pid], children: [], isZombie: true, stopSignal: 0)
            tree.add(p)
            return p
        }
        var p = FrozenProcess(pid: pid, threads: [], children: [], isZombie: false, stopSignal: 0)
        tree.add(p)
        var mine: [Int32] = []
        for round in 0..<maxRounds {
            // A process that exits while frozen leaves a zombie, which is all there is to
            // record; threads seized before it died are gone with it.
            if let now = try? proc.stat(pid: pid), now.isZombie {
                tree.forget(mine)
                p = FrozenProcess(pid: pid, threads: [pid], children: [], isZombie: true, stopSignal: 0)
                tree.update(p)
                return p
            }
            let tids: [Int32]
            do { tids = try proc.tasks(pid: pid) } catch {
                guard (try? proc.stat(pid: pid)) == nil else { throw error }
                tree.forget(mine)
                tree.remove(pid)
                return nil
            }
            let fresh = tids.filter { !tree.isSeized($0) }
            if fresh.isEmpty {
                p.threads = tids.filter { tree.isSeized($0) }
                tree.update(p)
                return p
            }
            for tid in fresh {
                if let stopSig = try seizeThread(tid, log: log) {
                    tree.noteSeized(tid)
                    mine.append(tid)
                    if stopSig != 0 && (tid == pid || p.stopSignal == 0) { p.stopSignal = stopSig }
                }
            }
            if round == maxRounds - 1 { throw FreezeError.unstable(pid: pid, rounds: maxRounds) }
        }
        return p
    }

    /// Seizes and interrupts one thread and leaves it in a trap-stop where syscalls can be
    /// injected. Returns the signal that had stopped it (0 if it was running), or nil if it is gone.
    static func seizeThread(_ tid: Int32, log: Logger) throws -> Int32? {
        do {
            try Ptrace.seize(tid, options: [.suspendSeccomp])
        } catch let e as SystemCallError where e.errno == EINVAL || e.errno == EPERM {
            // SUSPEND_SECCOMP needs CONFIG_CHECKPOINT_RESTORE and CAP_SYS_ADMIN; go on without it.
            do { try Ptrace.seize(tid, options: []) } catch let e as SystemCallError where e.errno == ESRCH || e.errno == EPERM {
                if e.errno == ESRCH || exiting(tid) { return nil }
                throw e
            }
        } catch let e as SystemCallError where e.errno == ESRCH {
            return nil
        }
        do { try Ptrace.interrupt(tid) } catch let e as SystemCallError where e.errno == ESRCH { return nil }
        guard let reported = try waitForStop(tid, log: log) else { return nil }
        do { return try passStops(tid, reported: reported, log: log) } catch {
            try? Ptrace.detach(tid)
            throw error
        }
    }

    /// PTRACE_SEIZE leaves group-stop and queued stop signals as they were (as in CRIU's
    /// skip_sigstop). A thread reported in group-stop is stopped by that signal; the
    /// interrupt's trap it may still have pending is stepped past by Remote, never by letting
    /// the thread run its own code (that once let a stopped thread finish pthread_create's
    /// mask restore during a pre-dump). A queued SIGSTOP, which no mask holds back, is taken
    /// off the queue here: its delivery stop comes before the thread runs anything. A queued
    /// SIGTSTP stays queued (blocked while we inject) and is dumped as a pending signal. The
    /// returned signal is sent again on release and on restore.
    static func passStops(_ tid: Int32, reported: Int32, log: Logger) throws -> Int32 {
        let isStop = { (s: Int32) in s == SIGSTOP || s == SIGTSTP }
        guard reported == SIGTRAP || isStop(reported) else {
            // SIGTTIN/SIGTTOU: the group-stop stays as it is; the thread is detached untouched.
            throw FreezeError.unsupportedStop(tid: tid, signal: reported)
        }
        var stopSig: Int32 = isStop(reported) ? reported : 0
        let stopBit = UInt64(1) << UInt64(SIGSTOP - 1)
        let stopQueued = { () throws -> Bool in
            let st = try ProcReader().status(pid: tid)
            return (st.sigPnd | st.shdPnd) & stopBit != 0
        }
        var passed = 0
        while try stopQueued() {
            guard passed < 8 else { throw FreezeError.unexpectedStop(tid: tid, status: .stopped(signal: SIGSTOP, event: 0)) }
            passed += 1
            try Ptrace.cont(tid)
            // Delivery (or the interrupt's pending trap) comes at once. Should neither come
            // (another thread took a shared SIGSTOP meanwhile), a fresh interrupt stops it.
            var st = WaitStatus.other(0)
            for _ in 0..<200 {
                st = try WaitStatus.wait(tid, flags: __WALL | WNOHANG)
                if st != .other(0) { break }
                usleep(500)
            }
            if st == .other(0) {
                log.debug("tid \(tid): no stop after passing a queued SIGSTOP, interrupting again")
                try Ptrace.interrupt(tid)
                st = try WaitStatus.wait(tid)
            }
            switch st {
            case .stopped(SIGSTOP, 0): stopSig = SIGSTOP  // taken off the queue, sent again later
            case .stopped: continue
            default: throw FreezeError.unexpectedStop(tid: tid, status: st)
            }
        }
        if stopSig != 0 { log.debug("tid \(tid): stopped by signal \(stopSig) before the dump (\(passed) queued SIGSTOP passed)") }
        return stopSig
    }

    /// The kernel refuses to seize a task that has begun to exit (EPERM, as for one traced by
    /// another): it is one when /proc shows it dead or a zombie, or not at all, soon after.
    static func exiting(_ tid: Int32) -> Bool {
        let proc = ProcReader()
        for _ in 0..<20 {
            guard let st = try? proc.stat(pid: tid) else { return true }
            if st.isZombie { return true }
            usleep(500)
        }
        return false
    }

    /// Waits for the PTRACE_EVENT_STOP that follows an interrupt. A signal that arrived first is
    /// handed back to the task (not lost) and the wait repeats.
    static func waitForStop(_ tid: Int32, log: Logger) throws -> Int32? {
        for _ in 0..<32 {
            let st: WaitStatus
            do { st = try WaitStatus.wait(tid) } catch let e as SystemCallError where e.errno == ECHILD { return nil }
            switch st {
            case .stopped(let sig, let event) where event == Ptrace.eventStop:
                return sig
            case .stopped(let sig, 0):
                log.debug("tid \(tid): signal \(sig) arrived while freezing, re-delivering")
                try Ptrace.cont(tid, signal: sig)
            case .stopped:
                try Ptrace.cont(tid)
            case .exited, .signaled:
                return nil
            case .other:
                throw FreezeError.unexpectedStop(tid: tid, status: st)
            }
        }
        throw FreezeError.unexpectedStop(tid: tid, status: .other(0))
    }
}
