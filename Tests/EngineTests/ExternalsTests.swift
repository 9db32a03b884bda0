import XCTest
@testable import Engine

/// CRIU's --external as cryo's one parser reads it: veth links and namespaces, nothing else.
final class ExternalsTests: XCTestCase {
    func testVethAndNamespacesTogether() throws {
        let e = try Externals(parsing: ["veth[eth0]:vout@br0", "uts[4026532179]:hostUts", "net[4026532009]:extNet"])
        XCTAssertEqual(e.veth.peers["eth0"], .init(outside: "vout", bridge: "br0"))
        XCTAssertEqual(e.namespaces.key(.uts, 4026532179), "hostUts")
        XCTAssertEqual(e.namespaces.key(.net, 4026532009), "extNet")
        XCTAssertNil(e.namespaces.key(.uts, 1))
    }

    func testOtherKindsAreRefusedByName() {
        for bad in ["mnt[/x]", "mnt[]:/y", "dev[8:1]:/dev/sda1", "unix[abc]", "unix[0]", "file[/etc/hosts]:x", "eth0"] {
            XCTAssertThrowsError(try Externals(parsing: [bad]), bad) {
                XCTAssertTrue("\($0)".hasPrefix("--external \(bad): cryo knows veth["), "\($0)")
            }
        }
    }

    /// CRIU's unix[INO], the same as --ext-unix-sk=INO.
    func testUnixSocketsByInode() throws {
        XCTAssertEqual(try Externals(parsing: ["unix[12345]", "unix[7]"]).unixSockets, [12345, 7])
    }

    /// CRIU's ext_mnt: mountpoint -> key at dump, key -> path at restore; the same words.
    func testMountsMapOneNameToAnother() throws {
        let e = try Externals(parsing: ["mnt[/sys/fs/cgroup/cpu]:/sys/fs/cgroup/cpu", "mnt[/proc/keys]:/dev/null", "uts[4026532179]:hostUts"])
        XCTAssertEqual(e.mounts, ["/sys/fs/cgroup/cpu": "/sys/fs/cgroup/cpu", "/proc/keys": "/dev/null"])
        XCTAssertEqual(e.namespaces.key(.uts, 4026532179), "hostUts")
    }

    func testMisspelledNamespacesAreRefused() {
        for bad in ["uts[abc]:k", "uts[123]", "uts[123]:", "pid[]:k"] {
            XCTAssertThrowsError(try Externals(parsing: [bad]), bad) {
                XCTAssertTrue("\($0)".contains("expected KIND[INODE]:KEY"), "\($0)")
            }
        }
    }
}
