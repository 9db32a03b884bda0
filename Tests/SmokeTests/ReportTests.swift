import Foundation
import XCTest
@testable import ZDTMCore

final class ReportTests: XCTestCase {
    func result(_ name: String, _ o: Outcome, _ reason: String = "", dir: String? = nil) -> CaseResult {
        CaseResult(spec: CaseSpec(workload: Workload(name: name), flavour: HostFlavour(), mode: NoCRMode()),
                   outcome: o, reason: reason, seconds: 1.5, dir: dir,
                   commands: o == .fail ? [RecordedCommand(argv: ["/bin/cryo", "dump", "-t", "1", "-D", "a b"], log: "l")] : [])
    }

    func testJUnit() {
        let xml = Report.junit([
            result("a00", .pass),
            result("b<&>", .fail, "map \"x\" changed\n<y>", dir: "/tmp/d"),
            result("c00", .skip, "not for mode"),
            result("d00", .xfail, "known"),
        ], suite: "smoke")
        XCTAssertTrue(xml.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"smoke\" tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"6.000\">"), xml)
        XCTAssertTrue(xml.contains("<testcase classname=\"a00\" name=\"h-nocr\" time=\"1.500\"/>"), xml)
        XCTAssertTrue(xml.contains("<testcase classname=\"b&lt;&amp;&gt;\" name=\"h-nocr\" time=\"1.500\">"), xml)
        XCTAssertTrue(xml.contains("<failure message=\"map &quot;x&quot; changed&#10;&lt;y&gt;\">/bin/cryo dump -t 1 -D &apos;a b&apos;&#10;kept: /tmp/d</failure>"), xml)
        XCTAssertTrue(xml.contains("<skipped message=\"not for mode\"/>"), xml)
        XCTAssertTrue(xml.contains("<system-out>expected failure: known</system-out>"), xml)
        XCTAssertTrue(xml.hasSuffix("</testsuite>\n"))
        XCTAssertEqual(Report.esc("a\u{1}b"), "a?b")
    }

    func testHTMLHasEveryCaseTheChartAndAFailuresLogTail() throws {
        let log = NSTemporaryDirectory() + "report-\(getpid()).log"
        try "line 1\nError dump: pid 7: fd 3 is a pty\n".write(toFile: log, atomically: true, encoding: .utf8)
        defer { unlink(log) }
        var fail = result("b00", .fail, "`cryo dump` exited 1 <x>", dir: "/tmp/kept")
        fail.commands = [RecordedCommand(argv: ["/bin/cryo", "dump"], log: log, seconds: 0.25)]
        var pass = result("a00", .pass)
        pass.phases = ["dump: memory": 12.5]
        let page = Report.html([pass, fail, result("c00", .skip, "not for mode")], suite: "smoke", wallSeconds: 3)
        XCTAssertTrue(page.contains("<svg"), "the chart per mode")
        XCTAssertTrue(page.contains("<td>a00 × h × nocr</td>") && page.contains("<td>b00 × h × nocr</td>") && page.contains("<td>c00 × h × nocr</td>"))
        XCTAssertTrue(page.contains("dump: memory 12.5"), "phases")
        XCTAssertTrue(page.contains("dump 0.25 s"), "command times")
        XCTAssertTrue(page.contains("Error dump: pid 7: fd 3 is a pty"), "the failing command's log inline")
        XCTAssertTrue(page.contains("exited 1 &lt;x&gt;"), "escaped")
        XCTAssertTrue(page.contains("1 passed, 1 failed, 1 skipped"))
    }

    func testSummaryEndsWithCountsLine() {
        let s = Report.summary([result("a00", .pass), result("b00", .fail, "boom"), result("c00", .xfail, "k")])
        XCTAssertEqual(s.split(separator: "\n").last, "2 passed, 1 failed")
        XCTAssertTrue(s.contains("b00 × h × nocr"))
        XCTAssertEqual(Report.finalLine([result("a00", .skip)]), "0 passed, 0 failed, 1 skipped")
    }

    func testShellQuoting() {
        XCTAssertEqual(RecordedCommand(argv: ["cryo", "-D", "/a b", "it's", "--x=1"], log: "").shell, "cryo -D '/a b' 'it'\\''s' --x=1")
        XCTAssertEqual(CryoCommands.dump(pid: 42, images: "/d"), ["dump", "-t", "42", "-D", "/d", "-v4", "-o", "dump.log"])
        XCTAssertEqual(CryoCommands.restore(images: "/d", pidfile: "/d/p"), ["restore", "-D", "/d", "-d", "--pidfile", "/d/p", "-v4", "-o", "restore.log"])
    }
}
