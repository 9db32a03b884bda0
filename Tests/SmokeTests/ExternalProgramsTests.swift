import Foundation
import XCTest
import ZDTMCore

/// How zdtm reads CRIU's zdtm programs' .desc files, Makefile arguments and outfiles.
final class ExternalProgramsTests: XCTestCase {
    func testDescParsingAndPlan() throws {
        let d = try ZdtmDesc.parse("""
            {'flavor': 'h ns', 'flags': 'suid excl', "opts": '--tcp-established',
             'deps': ['/bin/sh', "/bin/true"], 'feature': 'mnt_id'}   # trailing comment
            """, path: "x.desc")
        XCTAssertEqual(d.flavours, ["h", "ns"])
        XCTAssertEqual(d.flags, ["suid", "excl"])
        XCTAssertEqual(d.values["deps"], ["/bin/sh", "/bin/true"])
        let p = d.plan(flavour: "h", arch: "x86_64", root: true)
        XCTAssertNil(p.skip)
        XCTAssertTrue(p.exclusive)
        XCTAssertFalse(p.crfail)

        // An ns-only program never runs on the host.
        let ns = try ZdtmDesc.parse("{'flavor': 'ns uns', 'flags': 'suid'}", path: "y.desc")
        XCTAssertNotNil(ns.plan(flavour: "h", arch: "x86_64", root: true).skip)
        XCTAssertNil(ns.plan(flavour: "ns", arch: "x86_64", root: true).skip)
        XCTAssertNotNil(try ZdtmDesc.parse("{'arch': 'aarch64'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        XCTAssertNotNil(try ZdtmDesc.parse("{'flags': 'noauto'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        // cow00's: its pages are shared copy-on-write, which a lazy restore cannot keep.
        let nolazy = try ZdtmDesc.parse("{'flavor': 'ns h', 'flags': 'suid nolazy'}", path: "cow00.desc")
        XCTAssertEqual(nolazy.plan(flavour: "h", mode: "lazy", arch: "x86_64", root: true).skip, ".desc: nolazy, never run in mode lazy")
        XCTAssertNotNil(nolazy.plan(flavour: "h", mode: "remote-lazy", arch: "x86_64", root: true).skip)
        XCTAssertNil(nolazy.plan(flavour: "h", mode: "plain", arch: "x86_64", root: true).skip)
        XCTAssertNil(try ZdtmDesc.parse("{'flags': 'noremotelazy'}", path: "a").plan(flavour: "h", mode: "lazy", arch: "x86_64", root: true).skip)
        XCTAssertNotNil(try ZdtmDesc.parse("{'flags': 'suid'}", path: "a").plan(flavour: "h", arch: "x86_64", root: false).skip)
        XCTAssertTrue(try ZdtmDesc.parse("{'flags': 'crfail'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).crfail)
        XCTAssertNil(try ZdtmDesc.parse("{'opts': '--ext-unix-sk'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        XCTAssertNotNil(try ZdtmDesc.parse("{'opts': '--link-remap'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        // CRIU's --file-locks means the same to cryo: the program runs, and is dumped with it.
        XCTAssertNil(try ZdtmDesc.parse("{'opts': '--file-locks'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        XCTAssertNotNil(try ZdtmDesc.parse("{'dopts': '--tcp-established', 'ropts': '--tcp-close'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        XCTAssertNil(try ZdtmDesc.parse("{'dopts': '--tcp-established', 'timeout': '60'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).skip)
        XCTAssertEqual(try ZdtmDesc.parse("{'timeout': '60'}", path: "a").plan(flavour: "h", arch: "x86_64", root: true).timeout, 60)
        XCTAssertThrowsError(try ZdtmDesc.parse("{'flavor': 'h'", path: "bad"))
        XCTAssertThrowsError(try ZdtmDesc.parse("{'flavor' 'h'}", path: "bad"))
    }

    func testMakefileArguments() {
        let m = CriuMakefile.parse("""
            TST_NOFILE	:=				\\
            		pipe00				\\

            TST_FILE	=				\\
            		file_fown			\\
            		write_read00			\\

            TST_DIR		=				\\
            		cwd00				\\

            TST_DIR_FILE	=				\\
            		chroot				\\

            ifeq ($(ARCH),x86)
            	TST_FILE += fpu_file
            endif

            env00.pid:	env00
            	$(<D)/$(<F) --pidfile=$@ --outfile=$<.out --envname=ENV_00_TEST
            """)
        XCTAssertEqual(m.args(for: "pipe00"), [])
        XCTAssertEqual(m.args(for: "file_fown"), ["--filename=file_fown.test"])
        XCTAssertEqual(m.args(for: "fpu_file"), ["--filename=fpu_file.test"])
        XCTAssertEqual(m.args(for: "cwd00"), ["--dirname=cwd00.test"])
        XCTAssertEqual(m.args(for: "chroot"), ["--dirname=chroot.dir.test", "--filename=chroot.test"])
        XCTAssertEqual(m.args(for: "env00"), ["--envname=ENV_00_TEST"])
        XCTAssertEqual(m.args(for: "unknown"), [])
    }

    func testOutfileVerdict() throws {
        // As CRIU's test library writes it: messages, then "TIME: PID: PASS".
        XCTAssertTrue(Outfile.passed("12:00:01.123: 4242: Pre-migration check\n12:00:03.456: 4242: PASS\n"))
        XCTAssertTrue(Outfile.passed("PASS\n"))
        XCTAssertFalse(Outfile.passed("12:00:03.456: 4242: FAIL: sched_prio00.c:70: nice differs (errno = 0 (Success))\n"))
        XCTAssertFalse(Outfile.passed("PASSED\nBYPASS\n"))
        XCTAssertFalse(Outfile.passed(""))
        XCTAssertEqual(Outfile.reason("a: 1: msg\na: 1: FAIL: bad thing\nlater\n"), "a: 1: FAIL: bad thing")
        XCTAssertEqual(Outfile.reason("FAIL: ours\n"), "FAIL: ours")
        XCTAssertEqual(Outfile.reason("first\nlast\n"), "last")

        // A fixture folder as zdtm run --external-dir sees it: the program, its .desc and Makefile.
        let dir = NSTemporaryDirectory() + "zdtm-ext-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "TST_FILE = \\\n\tprog\n".write(toFile: dir + "/Makefile", atomically: true, encoding: .utf8)
        try "{'flavor': 'h', 'flags': 'excl'}".write(toFile: dir + "/prog.desc", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/prog")
        try "#!/bin/sh\n".write(toFile: dir + "/script.sh", atomically: true, encoding: .utf8)
        chmod(dir + "/script.sh", 0o755)
        XCTAssertEqual(try ExternalPrograms.scan(dir), [dir + "/prog"], "only ELF executables")
        let w = try ExternalPrograms.workload(path: dir + "/prog", makefile: ExternalPrograms.makefile(in: dir))
        XCTAssertEqual(w.args, ["--filename=prog.test"])
        XCTAssertEqual(w.desc?.flags, ["excl"])
    }
}
