import XCTest
@testable import Engine

/// How a container's mounts are classified at dump (MountTree.classify) and where an external
/// one is bound from at restore, on mountinfo as runc's default container shows it.
final class MountTreeTests: XCTestCase {
    let container = """
    101 61 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw
    102 101 0:45 / /proc rw,relatime - proc proc rw
    103 101 0:46 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
    104 103 0:47 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
    107 101 0:49 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
    108 107 0:50 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
    109 108 0:29 /t1 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
    65 102 0:45 /sys /proc/sys ro,relatime - proc proc rw
    67 102 0:46 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
    110 101 254:0 /data /data rw,relatime - ext4 /dev/vda rw

    """
    let host = """
    1 0 254:0 / / rw,relatime - ext4 /dev/vda rw
    29 1 0:29 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu

    """

    func testRuncContainerIsClassified() throws {
        let ms = try ProcMountInfoParser.parse(container, source: "test")
        let kinds = try MountTree.classify(ms, host: try ProcMountInfoParser.parse(host, source: "host"),
                                           externals: ["/sys/fs/cgroup/cpu": "cpu"], pid: 1, inode: 1)
        XCTAssertEqual(kinds[101], .root)
        XCTAssertEqual(kinds[102], .fresh)
        XCTAssertEqual(kinds[103], .fresh)
        XCTAssertEqual(kinds[104], .fresh)
        XCTAssertEqual(kinds[107], .fresh)
        XCTAssertEqual(kinds[109], .external(key: "cpu"))
        XCTAssertEqual(kinds[65], .bind(source: 102, subpath: "/sys"))
        XCTAssertEqual(kinds[67], .bind(source: 103, subpath: "/null"))
        XCTAssertEqual(kinds[110], .host, "a directory of the root's filesystem is bound from the host, not from --root")
        XCTAssertEqual(MountTree.ordered(ms, id: \.mountId, parent: \.parentId).first?.mountId, 101)
    }

    func testUnknownMountIsRefusedByName() throws {
        let ms = try ProcMountInfoParser.parse(container, source: "test").filter { $0.mountId != 110 }
        XCTAssertThrowsError(try MountTree.classify(ms, host: [], externals: [:], pid: 7, inode: 9)) {
            XCTAssertTrue("\($0)".contains("mount 109 at /sys/fs/cgroup/cpu (cgroup from cgroup, root /t1)"), "\($0)")
            XCTAssertTrue("\($0)".contains("--external mnt[/sys/fs/cgroup/cpu]:KEY"), "\($0)")
        }
    }

    func testSlaveOfAnOutsideGroupIsRefused() throws {
        let ms = try ProcMountInfoParser.parse("""
        1 0 0:40 / / rw - tmpfs r rw
        2 1 0:41 / /x rw master:5 - tmpfs x rw

        """, source: "test")
        XCTAssertThrowsError(try MountTree.classify(ms, host: [], externals: [:], pid: 7, inode: 9)) {
            XCTAssertTrue("\($0)".contains("mount 2 at /x"), "\($0)")
        }
    }

    /// runc names a cgroup v1 hierarchy by its mountpoint; the container's mount was its cgroup.
    func testExternalKeepsTheMountRootOnItsFilesystem() throws {
        let h = try ProcMountInfoParser.parse(host + "30 1 0:32 /api /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", source: "host")
        var e = Img_MntEntry()
        e.rootDev = 29
        e.root = "/t1"
        XCTAssertEqual(MountTree.externalSource(e, path: "/sys/fs/cgroup/cpu", host: h), "/sys/fs/cgroup/cpu/t1")
        e.rootDev = 32
        e.root = "/api/x/t1"
        XCTAssertEqual(MountTree.externalSource(e, path: "/sys/fs/cgroup/memory/x", host: h), "/sys/fs/cgroup/memory/x/t1")
        e.rootDev = 46
        e.root = "/null"
        XCTAssertEqual(MountTree.externalSource(e, path: "/dev/null", host: h), "/dev/null", "another filesystem: the path as given")
    }

    /// mount("", ...) leaves the source empty: two spaces in mountinfo (CRIU's mount_paths).
    func testMountinfoWithAnEmptySource() throws {
        let ms = try ProcMountInfoParser.parse("87 44 0:43 / /t/a\\040b rw,relatime - tmpfs  rw,size=10k\n", source: "test")
        XCTAssertEqual(ms.first?.fsType, "tmpfs")
        XCTAssertEqual(ms.first?.source, "")
        XCTAssertEqual(ms.first?.superOptions, "rw,size=10k")
        XCTAssertEqual(ms.first?.mountPoint, "/t/a b")
    }

    /// A mount propagated under one made later over its path is hidden (CRIU's
    /// overmount_with_shared_parent): refused, where a restore by path would put it elsewhere.
    func testOvermountedMountIsFound() throws {
        let ms = try ProcMountInfoParser.parse("""
        1 0 0:40 / / rw - tmpfs r rw
        2 1 0:41 / /d rw shared:3 - tmpfs d rw
        3 2 0:41 /a/b /d/a rw shared:3 - tmpfs d rw
        4 3 0:41 /d /d/a/c rw shared:3 - tmpfs d rw
        5 2 0:41 /d /d/a/b/c rw shared:3 - tmpfs d rw

        """, source: "test")
        let found = try XCTUnwrap(MountTree.overmounted(ms))
        XCTAssertEqual(found.hidden.mountId, 5)
        XCTAssertEqual(found.by.mountId, 3)
        XCTAssertThrowsError(try MountTree.classify(ms, host: [], externals: [:], pid: 7, inode: 9)) {
            XCTAssertTrue("\($0)".contains("mount 5 at /d/a/b/c (tmpfs from d, root /d) is hidden by mount 3 at /d/a"), "\($0)")
        }
        XCTAssertNil(MountTree.overmounted(try ProcMountInfoParser.parse(container, source: "test")), "runc's masked and read-only paths hide nothing")
    }
}

