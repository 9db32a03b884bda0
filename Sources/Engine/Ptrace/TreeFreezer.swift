import CKernel
import Glibc
import Logging

public enum FreezeError: Error, CustomStringConvertible {
    case rootGone(pid: Int32)
    case unexpectedStop(tid: Int32, status: WaitStatus)
    case unstable(pid: Int32, rounds: Int)

    public var description: String {
        switch self {
        case .rootGone(let pid): return "process \(pid) does not exist"
        case .unexpectedStop(let tid, let st): return "tid \(tid): unexpected stop while freezing: \(st)"
        case .unstable(let pid, let rounds): return "tree of \(pid) still changing after \(rounds) rounds of freezing"
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
    /// The process was in group-stop (SIGSTOP) before we came: it must stay stopped afterwards.
    public var wasStopped: Bool
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
            if leaveStopped && !killing { kill(p.pid, SIGSTOP) }
        }
        for tid in seized.reversed() {
            do { try Ptrace.detach(tid) } catch {
                if !killing { log.warning("detach \(tid): \(error)") }
            }
        }
        seized.removeAll()
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
            let p = FrozenProcess(pid: pid, threads: [pid], children: [], isZombie: true, wasStopped: false)
            tree.add(p)
            return p
        }
        var p = FrozenProcess(pid: pid, threads: [], children: [], isZombie: false, wasStopped: false)
        tree.add(p)
        var mine: [Int32] = []
        for round in 0..<maxRounds {
            // A process that exits while frozen leaves a zombie, which is all there is to
            // record; threads seized before it died are gone with it.
            if let now = try? proc.stat(pid: pid), now.isZombie {
                tree.forget(mine)
                p = FrozenProcess(pid: pid, threads: [pid], children: [], isZombie: true, wasStopped: false)
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
                    if stopSig != SIGTRAP && tid == pid { p.wasStopped = true }
                }
            }
            if round == maxRounds - 1 { throw FreezeError.unstable(pid: pid, rounds: maxRounds) }
        }
        return p
    }

    /// Seizes and interrupts one thread, returns the signal of its ptrace stop (SIGTRAP for a
    /// plain interrupt, SIGSTOP etc. for a task already in group-stop), or nil if it is gone.
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
        return try waitForStop(tid, log: log)
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
