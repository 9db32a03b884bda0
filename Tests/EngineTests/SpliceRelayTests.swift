import Engine
import Foundation
import Glibc
import XCTest

/// The proxy's and cache's way of moving data frames: exactly the bytes asked for, from a
/// socket to a file at an offset or to another socket, leaving what follows on the socket;
/// a source that ends early gives fewer bytes.
final class SpliceRelayTests: XCTestCase {
    func socketPair() -> (Int32, Int32) {
        var sv: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv), 0)
        return (sv[0], sv[1])
    }

    /// A file with no name (as the cache's memfds are), on tmpfs when there is one.
    func scratchFile() -> Int32 {
        let path = (access("/dev/shm", W_OK) == 0 ? "/dev/shm/" : NSTemporaryDirectory()) + "cryo-relay-\(UUID().uuidString)"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        unlink(path)
        XCTAssertGreaterThanOrEqual(fd, 0)
        return fd
    }

    func bytes(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

    func send(_ fd: Int32, _ b: [UInt8], thenClose: Bool) {
        Thread {
            var off = 0
            while off < b.count { let n = b.withUnsafeBytes { write(fd, $0.baseAddress! + off, b.count - off) }; if n <= 0 { break }; off += n }
            if thenClose { close(fd) }
        }.start()
    }

    func testMovesExactlyIntoFileAndSocket() throws {
        let relay = try SpliceRelay()
        let (a, b) = socketPair()
        defer { close(b) }
        let first = bytes(3 << 20 + 17, 1), second = bytes(70_000, 2), rest: [UInt8] = [9, 8, 7]
        send(a, first + second + rest, thenClose: true)
        let memfd = scratchFile()
        defer { close(memfd) }
        XCTAssertEqual(try relay.move(from: b, to: memfd, at: 4096, count: first.count, what: "test"), first.count)
        var back = [UInt8](repeating: 0, count: first.count)
        XCTAssertEqual(back.withUnsafeMutableBytes { pread(memfd, $0.baseAddress!, first.count, 4096) }, first.count)
        XCTAssertTrue(back == first)

        let (c, d) = socketPair()
        defer { close(d) }
        final class Got: @unchecked Sendable { var bytes: [UInt8] = [] }
        let got = Got()
        let reader = Thread {
            var buf = [UInt8](repeating: 0, count: 65536)
            while true { let n = buf.withUnsafeMutableBytes { read(d, $0.baseAddress!, $0.count) }; if n <= 0 { break }; got.bytes += buf[0..<n] }
        }
        reader.start()
        XCTAssertEqual(try relay.move(from: b, to: c, count: second.count, what: "test"), second.count)
        close(c)
        while !reader.isFinished { usleep(1000) }
        XCTAssertTrue(got.bytes == second)

        // What follows stays on the socket; an early end gives fewer bytes.
        XCTAssertEqual(try relay.move(from: b, to: memfd, at: 0, count: 100, what: "test"), rest.count)
        var tail = [UInt8](repeating: 0, count: 3)
        XCTAssertEqual(pread(memfd, &tail, 3, 0), 3)
        XCTAssertEqual(tail, rest)
    }

    /// A destination that refuses leaves bytes in the relay's pipe: it is not used again.
    func testFailureRetiresRelay() throws {
        let relay = try SpliceRelay()
        let (a, b) = socketPair()
        defer { close(b) }
        send(a, bytes(200_000, 3), thenClose: true)
        let ro = open("/dev/null", O_RDONLY)
        defer { close(ro) }
        XCTAssertThrowsError(try relay.move(from: b, to: ro, count: 200_000, what: "test"))
        let memfd = scratchFile()
        defer { close(memfd) }
        XCTAssertThrowsError(try relay.move(from: b, to: memfd, at: 0, count: 10, what: "test")) { e in
            XCTAssertTrue("\(e)".contains("left dirty"), "\(e)")
        }
    }
}
