import XCTest
import Glibc
import CKernel
@testable import Engine

/// The pieces of the pty kind that need no process: fdinfo's tty-index, termios2 as the
/// kernel lays it out, device numbers, where a ptmx's slaves live, and reading a live pty
/// through the same ioctls the dump uses.
final class TtyTests: XCTestCase {
    func testFdinfoTtyIndex() throws {
        let info = try ProcFdInfoParser.parse("pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t91\ntty-index:\t7\n", source: "test")
        XCTAssertEqual(info.ttyIndex, 7)
        XCTAssertNil(try ProcFdInfoParser.parse("pos:\t0\nflags:\t02\n", source: "test").ttyIndex)
    }

    func testDevptsOfAPtmxPath() {
        XCTAssertEqual(TtyDumpState.devptsDir(ofMaster: "/dev/ptmx"), "/dev/pts")
        XCTAssertEqual(TtyDumpState.devptsDir(ofMaster: "/dev/pts/ptmx"), "/dev/pts")
        XCTAssertEqual(TtyDumpState.devptsDir(ofMaster: "/srv/root/dev/pts/ptmx"), "/srv/root/dev/pts")
        XCTAssertTrue(TtyDumpState.isMaster(rdev: TtyDumpState.encode(UInt64(5 << 8 | 2))))
        XCTAssertFalse(TtyDumpState.isMaster(rdev: TtyDumpState.encode(UInt64(136 << 8 | 2))))
        var st = stat()
        st.st_rdev = UInt((137 << 8) | 4)  // /dev/pts/260
        XCTAssertEqual(TtyDumpState.index(ofSlave: st), 260)
    }

    /// A pty set up here is read through TCGETS2 the way the dump reads it, and the bytes it
    /// would write back are the kernel's own.
    func testTermiosRoundTripsThroughTheKernelLayout() throws {
        let m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard m >= 0 else { print("TtyTests: skipped, no /dev/ptmx (\(String(cString: strerror(errno))))"); throw XCTSkip("no ptmx") }
        defer { close(m) }
        var t = termios()
        XCTAssertEqual(tcgetattr(m, &t), 0)
        t.c_lflag &= ~tcflag_t(ICANON | ECHO)
        t.c_cc.6 = 3  // VMIN
        cfsetispeed(&t, speed_t(B9600)); cfsetospeed(&t, speed_t(B9600))
        XCTAssertEqual(tcsetattr(m, TCSANOW, &t), 0)
        var raw = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(ck_ioctl(m, TtyIoctl.getTermios2, &raw), 0)
        let e = Tty.termiosEntry(raw, speeds: true)
        XCTAssertEqual(e.cLflag & UInt32(ICANON | ECHO), 0)
        XCTAssertEqual(e.cCc[6], 3)
        XCTAssertEqual(e.cIspeed, 9600)
        XCTAssertEqual(e.cOspeed, 9600)
        XCTAssertEqual(e.cCc.count, 19)
        XCTAssertEqual(Tty.termiosBytes(e), Array(raw.prefix(44)))
        var w: [UInt16] = [11, 22, 33, 44]
        XCTAssertEqual(ck_ioctl(m, TtyIoctl.setWinsize, &w), 0)
        var back = [UInt16](repeating: 0, count: 4)
        XCTAssertEqual(ck_ioctl(m, TtyIoctl.getWinsize, &back), 0)
        XCTAssertEqual(back, w)
    }
}
