import Foundation
import XCTest
@testable import ZDTMCore

final class CatalogueTests: XCTestCase {
    let wfile = "/x/workloads.yaml"

    func testParsesAllWorkloadKeys() throws {
        let w = try Catalogue.parseWorkloads(yaml: """
            workloads:
              a00:
                description: first
                flavours: [h, ns]
                modes: [nocr, plain]
                exclude_modes: [lazy]
                xfail: {plain: "needs pipes"}
                exclusive: true
                timeout: 5
                args: [--size=3]
                ignore: [fd-flags, sigmask]
              b00:
            """, file: wfile)
        let a = try XCTUnwrap(w["a00"])
        XCTAssertEqual(a.description, "first")
        XCTAssertEqual(a.flavours, ["h", "ns"])
        XCTAssertEqual(a.modes, ["nocr", "plain"])
        XCTAssertEqual(a.excludeModes, ["lazy"])
        XCTAssertEqual(a.xfail, ["plain": "needs pipes"])
        XCTAssertTrue(a.exclusive)
        XCTAssertEqual(a.timeout, 5)
        XCTAssertEqual(a.args, ["--size=3"])
        XCTAssertEqual(a.ignore, [.fdFlags, .sigmask])
        XCTAssertFalse(a.allows(mode: "lazy"))
        XCTAssertFalse(a.allows(mode: "pre"))
        XCTAssertTrue(a.allows(mode: "plain"))
        XCTAssertFalse(a.allows(flavour: "uns"))
        let b = try XCTUnwrap(w["b00"])
        XCTAssertEqual(b.timeout, 30)
        XCTAssertTrue(b.allows(mode: "pre") && b.allows(flavour: "uns"))
    }

    /// Each bad catalogue must fail naming the file and the key.
    func testRejectsBadWorkloads() {
        let cases: [(String, String, String)] = [
            ("workloads:\n  a00: {colour: red}", "workloads.a00.colour", "unknown key"),
            ("workloads:\n  a00: {timeout: -1}", "workloads.a00.timeout", "positive"),
            ("workloads:\n  a00: {timeout: soon}", "workloads.a00.timeout", "positive"),
            ("workloads:\n  a00: {exclusive: maybe}", "workloads.a00.exclusive", "true or false"),
            ("workloads:\n  a00: {modes: [nocr, warp]}", "workloads.a00.modes[1]", "unknown mode 'warp'"),
            ("workloads:\n  a00: {flavours: [vm]}", "workloads.a00.flavours[0]", "unknown flavour 'vm'"),
            ("workloads:\n  a00: {xfail: {warp: why}}", "workloads.a00.xfail", "unknown mode 'warp'"),
            ("workloads:\n  a00: {ignore: [memory]}", "workloads.a00.ignore[0]", "unknown state part 'memory'"),
            ("workloads:\n  a00: {args: {x: 1}}", "workloads.a00.args", "expected a list"),
            ("workloads:\n  A00: {}", "workloads.A00", "lowercase"),
            ("workloads:\n  a00: {}\nextra: 1", "extra", "unknown key"),
        ]
        for (yaml, key, reason) in cases {
            XCTAssertThrowsError(try Catalogue.parseWorkloads(yaml: yaml, file: wfile), yaml) { e in
                guard case SuiteError.key(let p, let k, let r) = e else { return XCTFail("\(yaml): \(e)") }
                XCTAssertEqual(p, wfile, yaml)
                XCTAssertEqual(k, key, yaml)
                XCTAssertTrue(r.contains(reason), "\(yaml): \(r)")
                XCTAssertTrue("\(e)".hasPrefix(wfile + ": " + key), "\(e)")
            }
        }
        XCTAssertThrowsError(try Catalogue.parseWorkloads(yaml: "suites: []", file: wfile))
        XCTAssertThrowsError(try Catalogue.parseWorkloads(yaml: "workloads: [a: b", file: wfile)) { e in
            XCTAssertTrue("\(e)".contains("not valid YAML"), "\(e)")
        }
    }

    func testSuiteParsingAndValidation() throws {
        let s = try Catalogue.parseSuite(yaml: "description: d\nworkloads: [a00, b00]\nmodes: [nocr]", file: "/x/s.yaml", defaultName: "s")
        XCTAssertEqual(s.name, "s")
        XCTAssertEqual(s.workloads, ["a00", "b00"])
        XCTAssertEqual(s.flavours, ["h"])
        let known = ["a00": Workload(name: "a00"), "b00": Workload(name: "b00")]
        XCTAssertNoThrow(try Catalogue.check(suite: s, file: "/x/s.yaml", against: known))

        XCTAssertThrowsError(try Catalogue.check(suite: s, file: "/x/s.yaml", against: ["a00": Workload(name: "a00")])) { e in
            XCTAssertEqual(e as? SuiteError, .key(path: "/x/s.yaml", key: "workloads[1]", reason: "unknown workload 'b00' (not in workloads.yaml)"))
        }
        var twice = s
        twice.workloads = ["a00", "a00"]
        XCTAssertThrowsError(try Catalogue.check(suite: twice, file: "/x/s.yaml", against: known))
        XCTAssertThrowsError(try Catalogue.parseSuite(yaml: "workloads: [a00]\nmode: nocr", file: "/x/s.yaml", defaultName: "s")) { e in
            XCTAssertEqual(e as? SuiteError, .key(path: "/x/s.yaml", key: "mode", reason: "unknown key"))
        }
        XCTAssertThrowsError(try Catalogue.parseSuite(yaml: "workloads: []", file: "/x/s.yaml", defaultName: "s"))
        XCTAssertThrowsError(try Catalogue.parseSuite(yaml: "workloads: [a00]\nflavours: [xx]", file: "/x/s.yaml", defaultName: "s"))
    }

    /// A suite naming a workload the catalogue lacks fails when the folder is loaded.
    func testDirectoryLoadNamesTheBadFile() throws {
        let dir = NSTemporaryDirectory() + "zdtm-cat-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "workloads:\n  a00:\n".write(toFile: dir + "/workloads.yaml", atomically: true, encoding: .utf8)
        try "workloads: [a00]\n".write(toFile: dir + "/good.yaml", atomically: true, encoding: .utf8)
        let cat = try Catalogue(directory: dir)
        XCTAssertEqual(cat.suites.keys.sorted(), ["good"])
        XCTAssertThrowsError(try cat.suite("nope")) { e in XCTAssertTrue("\(e)".contains("known: good"), "\(e)") }
        try "workloads: [a00, zz99]\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Catalogue(directory: dir)) { e in
            XCTAssertEqual("\(e)", "\(dir)/bad.yaml: workloads[1]: unknown workload 'zz99' (not in workloads.yaml)")
        }
    }

    /// The repository's own Suites/ must load, and smoke must cover every workload built.
    func testRepositorySuitesLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let cat = try Catalogue(directory: root + "/Suites")
        let smoke = try cat.suite("smoke")
        XCTAssertNoThrow(try cat.suite("default"))
        let programs = try FileManager.default.contentsOfDirectory(atPath: root + "/Sources/TestPrograms")
            .filter { FileManager.default.fileExists(atPath: root + "/Sources/TestPrograms/\($0)/main.c") }
        for p in programs {
            XCTAssertNotNil(cat.workloads[p], "workload \(p) is built but not in Suites/workloads.yaml")
            XCTAssertTrue(smoke.workloads.contains(p), "workload \(p) is not in the smoke suite")
        }
        XCTAssertEqual(Locations.suitesDir(from: root + "/.build/debug"), root + "/Suites")
    }

    func testRegistriesNameWhatExists() {
        XCTAssertEqual(try Modes.named("nocr").name, "nocr")
        XCTAssertEqual(try Flavours.named("h").name, "h")
        XCTAssertEqual(try Modes.named("plain").name, "plain")
        XCTAssertEqual(try Modes.named("pre").name, "pre")
        XCTAssertEqual(try Modes.named("snaps").name, "snaps")
        XCTAssertEqual(try Modes.named("dedup").name, "dedup")
        XCTAssertEqual(try Modes.named("page-server").name, "page-server")
        XCTAssertEqual(try Modes.named("lazy").name, "lazy")
        XCTAssertEqual(try Modes.named("remote-lazy").name, "remote-lazy")
        XCTAssertEqual(try Modes.named("fault-4").name, "fault-4")
        XCTAssertEqual(try Modes.named("remote").name, "remote")
        XCTAssertEqual(try Modes.named("stream").name, "stream")
        XCTAssertThrowsError(try Modes.named("nope")) { e in
            XCTAssertTrue("\(e)".contains("available: nocr, plain, pre, snaps, dedup, page-server, lazy, remote-lazy, stream, remote"), "\(e)")
        }
        XCTAssertEqual(try Flavours.named("ns").name, "ns")
        XCTAssertEqual(try Flavours.named("uns").name, "uns")
        XCTAssertThrowsError(try Flavours.named("nope")) { e in
            XCTAssertTrue("\(e)".contains("available: h, ns, uns"), "\(e)")
        }
    }

    func testSelection() throws {
        var a = Workload(name: "a00"); a.modes = ["plain"]
        let cat = Catalogue(directory: "/x", workloads: ["a00": a, "b00": Workload(name: "b00"), "c01": Workload(name: "c01")],
                            suites: ["smoke": { var s = Suite(name: "smoke"); s.workloads = ["b00"]; return s }()])
        var sel = Selection()
        XCTAssertEqual(try sel.cases(in: cat).run.map(\.workload.name), ["b00"])
        sel.regex = "0$"
        let r = try sel.cases(in: cat)
        XCTAssertEqual(r.run.map(\.workload.name), ["b00"])
        XCTAssertEqual(r.skipped.map(\.spec.workload.name), ["a00"])
        sel.regex = "^zz"
        XCTAssertThrowsError(try sel.cases(in: cat)) { XCTAssertEqual($0 as? SelectionError, .regexMatchesNothing("^zz")) }
        sel = Selection(); sel.tests = ["nope"]
        XCTAssertThrowsError(try sel.cases(in: cat)) { XCTAssertEqual($0 as? SelectionError, .unknownWorkload("nope")) }
        sel = Selection(); sel.externals = ["/bin/true"]
        XCTAssertEqual(try sel.cases(in: cat).run.map(\.workload.externalPath), ["/bin/true"])
    }
}
