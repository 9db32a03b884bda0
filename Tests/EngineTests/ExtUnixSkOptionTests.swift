import Engine
import Foundation
import Glibc
import XCTest

/// CRIU's --ext-unix-sk[=INO,...] (and -x), from the command line and from RPC's ext_unix_sk
/// and unix_sk_ino, into one value.
final class ExtUnixSkOptionTests: XCTestCase {
    func testSpellings() throws {
        XCTAssertEqual(ExtUnixSk.normalize(["dump", "--ext-unix-sk", "-t", "1"]), ["dump", "--ext-unix-sk=dgram", "-t", "1"])
        XCTAssertEqual(ExtUnixSk.normalize(["-x"]), ["--ext-unix-sk=dgram"])
        XCTAssertEqual(ExtUnixSk.normalize(["-x12,13"]), ["--ext-unix-sk=12,13"])
        XCTAssertEqual(ExtUnixSk.normalize(["--ext-unix-sk=7", "-v4"]), ["--ext-unix-sk=7", "-v4"])
        let both = try ExtUnixSk(parsing: ["dgram", "12,13", "7"])
        XCTAssertTrue(both.datagrams)
        XCTAssertEqual(both.inodes, [7, 12, 13])
        XCTAssertFalse(try ExtUnixSk(parsing: ["9"]).datagrams)
        XCTAssertThrowsError(try ExtUnixSk(parsing: ["abc"]))
        XCTAssertThrowsError(try ExtUnixSk(parsing: ["12,"]))
        XCTAssertThrowsError(try ExtUnixSk(parsing: ["0"]))
    }

    func testRPCFields() throws {
        let dir = NSTemporaryDirectory() + "rpc-extunix-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        var o = Rpc_CriuOpts()
        o.imagesDirFd = fd
        o.pid = 1234
        o.extUnixSk = true
        var s = Rpc_UnixSk(); s.inode = 4242
        o.unixSkIno = [s]
        let line = try RPCCommandLine(o, kind: .dump, peer: getpid())
        XCTAssertTrue(line.arguments.contains("--ext-unix-sk=dgram"), "\(line.arguments)")
        XCTAssertTrue(line.arguments.contains("--ext-unix-sk=4242"), "\(line.arguments)")
    }
}
