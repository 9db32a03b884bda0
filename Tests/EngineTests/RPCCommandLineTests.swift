import Engine
import Foundation
import Glibc
import XCTest

/// CriuOpts as CLI words: every option set becomes CRIU's spelling, tagged with its field so a
/// refusal names it; fds are the caller's, reached through /proc.
final class RPCCommandLineTests: XCTestCase {
    var dirFd: Int32 = -1
    let dir = NSTemporaryDirectory() + "rpc-cl-\(getpid())"

    override func setUpWithError() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        dirFd = open(dir, O_RDONLY | O_DIRECTORY)
        XCTAssertGreaterThanOrEqual(dirFd, 0)
    }

    override func tearDown() {
        close(dirFd)
        try? FileManager.default.removeItem(atPath: dir)
    }

    func opts() -> Rpc_CriuOpts {
        var o = Rpc_CriuOpts()
        o.imagesDirFd = dirFd
        o.pid = 1234
        return o
    }

    func testRuncDumpOptions() throws {
        var o = opts()
        o.leaveRunning = false  // sent explicitly false by runc: no word
        o.tcpEstablished = true
        o.manageCgroups = true
        o.emptyNs = 0x4000_0000
        o.freezeCgroup = "/sys/fs/cgroup/freezer/c1"
        o.orphanPtsMaster = true
        o.root = "/run/c1/rootfs"
        var m = Rpc_ExtMountMap(); m.key = "/dev/null"; m.val = "/dev/null"
        o.extMnt = [m]
        let line = try RPCCommandLine(o, kind: .dump, peer: getpid())
        let real = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        XCTAssertEqual(line.arguments, ["-D", real, "-t", "1234", "--tcp-established", "--external", "mnt[/dev/null]:/dev/null",
                                        "--manage-cgroups=soft", "--empty-ns", "net", "--freeze-cgroup", "/sys/fs/cgroup/freezer/c1", "--orphan-pts-master"])
        XCTAssertEqual(line.imagesDir, real)
        XCTAssertEqual(line.field(namedIn: "Unknown option '--manage-cgroups'"), "manage_cgroups")
        XCTAssertEqual(line.field(namedIn: "--orphan-pts-master: not supported: why"), "orphan_pts_master")
        XCTAssertEqual(line.field(namedIn: "Unknown option '--external'"), "ext_mnt")
    }

    func testRestoreAndPreDumpWords() throws {
        var o = opts()
        o.rstSibling = true
        o.root = "/r"
        o.leaveRunning = true
        o.trackMem = true
        var i = Rpc_InheritFd(); i.key = "pipe:[42]"; i.fd = 5
        o.inheritFd = [i]
        let r = try RPCCommandLine(o, kind: .restore, peer: getpid()).arguments
        XCTAssertTrue(r.contains("--restore-sibling") && r.contains("--root") && r.contains("fd[5]:pipe:[42]"), "\(r)")
        XCTAssertFalse(r.contains("-t"), "restore takes no pid")
        // A pre-dump always tracks memory and leaves the tree running: no words for either.
        let p = try RPCCommandLine(o, kind: .preDump, peer: getpid()).arguments
        XCTAssertFalse(p.contains("--track-mem") || p.contains("--leave-running"), "\(p)")
    }

    func testMissingOrBadFdsAndMasksAreRefusedByField() {
        var o = opts()
        o.clearImagesDirFd()
        XCTAssertThrowsError(try RPCCommandLine(o, kind: .dump, peer: getpid())) { XCTAssertTrue("\($0)".contains("images_dir_fd"), "\($0)") }
        o = opts()
        o.clearPid()
        XCTAssertThrowsError(try RPCCommandLine(o, kind: .dump, peer: getpid())) { XCTAssertTrue("\($0)".contains("pid"), "\($0)") }
        o = opts()
        o.workDirFd = 999
        XCTAssertThrowsError(try RPCCommandLine(o, kind: .dump, peer: getpid())) { XCTAssertTrue("\($0)".contains("work_dir_fd"), "\($0)") }
        o = opts()
        o.emptyNs = 0x0800_0000  // ipc
        XCTAssertThrowsError(try RPCCommandLine(o, kind: .dump, peer: getpid())) { XCTAssertTrue("\($0)".contains("empty_ns"), "\($0)") }
    }

    func testConfigFileOptionsComeAfterTheRequest() throws {
        let conf = dir + "/runc.conf"
        try "# comment\ntcp-established\n--ghost-limit 10\n".write(toFile: conf, atomically: true, encoding: .utf8)
        var line = try RPCCommandLine(opts(), kind: .dump, peer: getpid())
        try line.appendConfigFile(conf)
        XCTAssertEqual(Array(line.arguments.suffix(3)), ["--tcp-established", "--ghost-limit", "10"])
        XCTAssertEqual(line.field(namedIn: "Unknown option '--ghost-limit'"), "config_file (\(conf))")
        try line.appendConfigFile(dir + "/missing.conf")  // ignored, as CRIU does
    }
}
