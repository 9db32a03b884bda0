import XCTest
import Glibc
@testable import Engine

/// Real ptrace against real child processes. Needs root (or ptrace rights over children).
final class PtraceTests: XCTestCase {
    var spawned: [Process] = []

    override func setUpWithError() throws {
        if geteuid() != 0 {
            print("PtraceTests: skipped, needs root for ptrace and /proc access")
            throw XCTSkip("needs root")
        }
    }

    override func tearDown() {
        for p in spawned where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        spawned.removeAll()
    }

    func spawn(_ path: String, _ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        spawned.append(p)
        return p.processIdentifier
    }

    /// Waits until /proc shows `count` threads or processes (setup done).
    func waitUntil(_ what: String, timeout: Double = 5, _ cond: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !cond() {
            if Date() > deadline { XCTFail("timed out waiting for \(what)"); throw XCTSkip("setup") }
            usleep(10_000)
        }
    }

    func testFreezeInjectAndRestoreRegistersExactly() throws {
        let pid = try spawn("/bin/sleep", ["30"])
        usleep(100_000)
        let proc = ProcReader()
        let tree = try TreeFreezer.freeze(root: pid, proc: proc)
        defer { tree.release() }
        XCTAssertEqual(tree.processes.map(\.pid), [pid])
        XCTAssertEqual(tree.processes.first?.threads, [pid])

        let before = try Ptrace.getRegs(pid)
        let xstate = try Ptrace.getXState(pid)
        XCTAssertGreaterThanOrEqual(xstate.count, 576, "xstate must include the XSAVE header")
        let mask = try Ptrace.getSigmask(pid)
        let rseq = try Ptrace.rseqConfiguration(pid)
        XCTAssertNotEqual(rseq.pointer, 0, "glibc registers rseq in every thread")
        XCTAssertEqual(rseq.signature, 0x5305_3053)

        let remote = try Remote(tid: pid, maps: try proc.maps(pid: pid))
        XCTAssertEqual(try remote.syscall(.getpid), UInt64(pid))
        XCTAssertEqual(try remote.syscall(.gettid), UInt64(pid))
        let scratch = try remote.scratch()
        try remote.writeMemory(Array("hello".utf8), at: scratch)
        XCTAssertEqual(try remote.readMemory(at: scratch, count: 5), Array("hello".utf8))
        XCTAssertTrue(try proc.maps(pid: pid).contains { $0.start == scratch })
        // A failing call reports the errno and leaves the task usable.
        XCTAssertThrowsError(try remote.syscall(.close, 9999)) { e in
            guard case RemoteError.syscallFailed(_, _, let errno) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(errno, EBADF)
        }
        try remote.finish()

        let after = try Ptrace.getRegs(pid)
        XCTAssertTrue(withUnsafeBytes(of: before) { b in withUnsafeBytes(of: after) { a in b.elementsEqual(a) } },
                      "registers must be exactly as before injection")
        XCTAssertEqual(try Ptrace.getSigmask(pid), mask)
        XCTAssertEqual(try Ptrace.getXState(pid), xstate)
        XCTAssertFalse(try proc.maps(pid: pid).contains { $0.start == scratch }, "scratch page must be unmapped")
        tree.release()
        usleep(50_000)
        XCTAssertEqual(kill(pid, 0), 0, "process must survive the freeze")
    }

    func testInterruptedSleepRestartsAfterInjection() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sleep")
        p.arguments = ["1"]
        try p.run()
        spawned.append(p)
        let pid = p.processIdentifier
        usleep(200_000)
        let start = Date()
        let tree = try TreeFreezer.freeze(root: pid)
        let regs = try Ptrace.getRegs(pid)
        XCTAssertTrue([35, 230].contains(regs.orig_rax), "sleep is stopped inside (clock_)nanosleep, got \(regs.orig_rax)")
        let remote = try Remote(tid: pid, maps: try ProcReader().maps(pid: pid))
        _ = try remote.syscall(.getppid)
        try remote.finish()
        tree.release()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "sleep must restart its syscall and exit normally")
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
    }

    func testFreezeThreadsAndChildren() throws {
        let pid = try spawn("/usr/bin/python3", ["-c", """
            import threading, time, os, subprocess
            for _ in range(4): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
            kids = [subprocess.Popen(['/bin/sleep', '30']) for _ in range(2)]
            time.sleep(30)
            """])
        let proc = ProcReader()
        try waitUntil("threads and children") {
            ((try? proc.tasks(pid: pid).count) ?? 0) >= 5 && ((try? proc.allChildren(pid: pid).count) ?? 0) >= 2
        }
        let tree = try TreeFreezer.freeze(root: pid, proc: proc)
        defer { tree.release(); for c in tree.processes where c.pid != pid { kill(c.pid, SIGKILL) } }
        XCTAssertEqual(tree.processes.count, 3)
        XCTAssertEqual(tree.process(pid)?.threads.count, 5)
        for p in tree.processes {
            for t in p.threads {
                XCTAssertEqual(try proc.taskStat(pid: p.pid, tid: t).state, "t", "tid \(t) must be in a ptrace stop")
            }
        }
    }

    func testTreeForkingWhileFreezingIsCaughtWhole() throws {
        let pid = try spawn("/bin/sh", ["-c", "i=0; while [ $i -lt 300 ]; do sleep 5 & i=$((i+1)); done; wait"])
        usleep(30_000)
        let proc = ProcReader()
        let tree = try TreeFreezer.freeze(root: pid, proc: proc)
        defer {
            let all = tree.processes.map(\.pid)
            tree.release(killing: true)
            _ = all
        }
        let frozen = Set(tree.processes.map(\.pid))
        for p in tree.processes where !p.isZombie {
            XCTAssertEqual(try proc.stat(pid: p.pid).state, "t")
            for c in try proc.allChildren(pid: p.pid) {
                XCTAssertTrue(frozen.contains(c), "child \(c) of \(p.pid) escaped the freeze")
            }
        }
        // Still frozen a little later: nothing forks while frozen.
        usleep(50_000)
        XCTAssertEqual(Set(try proc.allChildren(pid: pid)), Set(tree.process(pid)?.children ?? []))
    }

    func testPendingSignalsAndMask() throws {
        let pid = try spawn("/usr/bin/python3", ["-c", """
            import signal, os, time, threading
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGUSR2])
            os.kill(os.getpid(), signal.SIGUSR1)
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
            time.sleep(30)
            """])
        let proc = ProcReader()
        try waitUntil("signals pending") { ((try? proc.status(pid: pid).shdPnd) ?? 0) != 0 && ((try? proc.status(pid: pid).sigPnd) ?? 0) != 0 }
        let tree = try TreeFreezer.freeze(root: pid, proc: proc)
        defer { tree.release() }
        let mask = try Ptrace.getSigmask(pid)
        XCTAssertNotEqual(mask & (1 << (UInt64(SIGUSR1) - 1)), 0)
        let shared = try Ptrace.peekSiginfo(pid, shared: true)
        let priv = try Ptrace.peekSiginfo(pid, shared: false)
        XCTAssertEqual(shared.map { Int32(littleEndianBytes: $0) }, [SIGUSR1])
        XCTAssertEqual(priv.map { Int32(littleEndianBytes: $0) }, [SIGUSR2])
    }
}

extension Int32 {
    init(littleEndianBytes b: [UInt8]) {
        self = Int32(b[0]) | Int32(b[1]) << 8 | Int32(b[2]) << 16 | Int32(b[3]) << 24
    }
}

