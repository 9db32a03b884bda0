import Foundation
import Glibc
import XCTest
import Engine

/// Seccomp state cryo cannot bring back is refused at dump, naming the thread, and the
/// process runs on with its filters.
extension RestoreErrorsTests {
    func testSeccompUserNotifFilterIsRefused() throws {
        let work = dir + "/seccomp-notif"
        // A thread installs a filter that hands acct(2) to a user-space listener.
        let p = try python("""
            import ctypes, struct, threading, time
            libc = ctypes.CDLL(None, use_errno=True)
            def filtered():
                ins = [(0x20, 0, 0, 0), (0x15, 0, 1, 163), (0x06, 0, 0, 0x7fc00000), (0x06, 0, 0, 0x7fff0000)]
                code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in ins))
                prog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(ins), ctypes.addressof(code)))
                libc.prctl(38, 1, 0, 0, 0)
                if libc.syscall(317, 1, 0, prog) != 0: raise SystemExit(ctypes.get_errno())
                open("ready", "w").write(str(threading.get_native_id()))
                time.sleep(30)
            threading.Thread(target=filtered).start()
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let tid = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)
        try assertDumpFails(p, work: work, saying: ["pid \(p.processIdentifier) tid \(tid): seccomp", "filter 0 (of 1)", "SECCOMP_RET_USER_NOTIF"])
        let st = try ProcReader().taskStatus(pid: p.processIdentifier, tid: Int32(tid)!)
        XCTAssertEqual(st.seccompMode, 2, "the thread keeps its filter after the failed dump")
        XCTAssertEqual(st.seccompFilters, 1)
    }
}
