import Foundation
import Glibc
import XCTest
import Engine
import ZDTMCore

/// `cryo image` and CRIU's crit read the same images the same way: every image of real dumps,
/// decoded by both, gives the same fields with the same values (numbers compared as numbers:
/// crit prints some as hex or symbolically, protobuf JSON prints 64-bit ones as strings), and
/// `x ps` / `x mems` list the same tasks and mappings.
final class CritCompatTests: XCTestCase {
    struct Tally { var compared = 0; var symbolic = 0; var onlyCryo: Set<String> = [] }

    /// A leaf as a canonical decimal when it reads as an integer: 12, "12", "0x1f".
    static func number(_ v: Any) -> String? {
        var s: String
        if let n = v as? NSNumber, !(v is Bool) { s = n.stringValue } else if let t = v as? String { s = t } else { return nil }
        if s.hasPrefix("0x"), let u = UInt64(s.dropFirst(2), radix: 16) { return String(u) }
        if let i = Int64(s) { return String(i) }
        if let u = UInt64(s) { return String(u) }
        return nil
    }

    /// "tree00/core-1.img.entries[0].tc" -> "core.tc": a field's place, whatever the task.
    static func field(_ path: String) -> String {
        var p = path.split(separator: "/").dropFirst().joined(separator: "/")
        p = p.replacingOccurrences(of: #"-[0-9a-f]+\.img"#, with: "", options: .regularExpression)
        p = p.replacingOccurrences(of: #"\.img"#, with: "", options: .regularExpression)
        p = p.replacingOccurrences(of: #"\[[0-9]+\]"#, with: "", options: .regularExpression)
        return p.replacingOccurrences(of: ".entries", with: "")
    }

    /// Walks crit's value and ours together; returns what differs, with its path.
    static func compare(_ c: Any, _ o: Any, path: String, tally: inout Tally) -> [String] {
        switch (c, o) {
        case let (cd as [String: Any], od as [String: Any]):
            var out: [String] = []
            // crit drops fields its (older) schemas lack; a field only crit shows is one cryo lost.
            let onlyCrit = Set(cd.keys).subtracting(od.keys)
            if !onlyCrit.isEmpty { out.append("\(path): crit shows \(onlyCrit.sorted()) that cryo does not") }
            for k in Set(od.keys).subtracting(cd.keys) { tally.onlyCryo.insert(field(path) + "." + k) }
            for (k, v) in cd { if let w = od[k] { out += compare(v, w, path: path + "." + k, tally: &tally) } }
            return out
        case let (ca as [Any], oa as [Any]):
            guard ca.count == oa.count else { return ["\(path): \(ca.count) items in crit, \(oa.count) in cryo"] }
            return zip(ca, oa).enumerated().flatMap { compare($0.element.0, $0.element.1, path: "\(path)[\($0.offset)]", tally: &tally) }
        default:
            if let x = number(c), let y = number(o) {
                tally.compared += 1
                return x == y ? [] : ["\(path): crit \(c), cryo \(o)"]
            }
            if let s = c as? String, let t = o as? String {
                tally.compared += 1
                // base64 (crit wraps it with newlines)
                let a = s.filter { !$0.isWhitespace }, b = t.filter { !$0.isWhitespace }
                return a == b ? [] : ["\(path): crit \"\(s.prefix(60))\", cryo \"\(t.prefix(60))\""]
            }
            if let a = c as? Bool, let b = o as? Bool { tally.compared += 1; return a == b ? [] : ["\(path): crit \(a), cryo \(b)"] }
            // crit names flags and enums ("PE_PRESENT", "PROT_READ | PROT_WRITE") where cryo prints the number.
            tally.symbolic += 1
            return []
        }
    }

    func testCryoAndCritDecodeTheSameImages() throws {
        let h = try CRHarness.make("CritCompatTests")
        guard access("/usr/bin/crit", X_OK) == 0 else {
            print("CritCompatTests: skipped, /usr/bin/crit is not installed (Debian package criu)")
            throw XCTSkip("crit not installed")
        }
        var tally = Tally()
        var images = 0
        for name in ["tree00", "maps01", "pipe00", "unix01", "tcp01", "memfd00", "sparse00", "deleted00", "thread00", "lock00"] {
            let pid = try h.start(name)
            let dir = h.dir + "/" + name + "/img"
            let (code, log) = try h.cryo(["dump", "-t", "\(pid)", "-D", dir, "-R", "-v2"] + (name == "lock00" ? ["--file-locks"] : []))
            let verdict = try h.stop(pid, name: name)
            XCTAssertEqual(code, 0, "\(name): \(log)")
            XCTAssertTrue(verdict.hasSuffix("PASS"), "\(name) after a --leave-running dump: \(verdict)")
            guard code == 0 else { continue }
            for f in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() where f.hasSuffix(".img") && !f.hasPrefix("pages-") {
                let file = dir + "/" + f
                let (cc, critOut) = try run("/usr/bin/crit", ["decode", "-i", file])
                XCTAssertEqual(cc, 0, "crit cannot decode \(name)/\(f): \(critOut.prefix(300))")
                let (oc, ourOut) = try run(h.bin + "/cryo", ["image", "decode", "-i", file])
                XCTAssertEqual(oc, 0, "cryo image decode \(name)/\(f): \(ourOut.prefix(300))")
                guard cc == 0, oc == 0 else { continue }
                let c = try JSONSerialization.jsonObject(with: Data(critOut.utf8)), o = try JSONSerialization.jsonObject(with: Data(ourOut.utf8))
                let diff = Self.compare(c, o, path: "\(name)/\(f)", tally: &tally)
                XCTAssertEqual(diff, [], "\(name)/\(f)")
                // And cryo's JSON turns back into the very same bytes.
                let again = try ImageJSON.encode(json: try ImageJSON.decode(file: file, pages: true), file: f)
                XCTAssertEqual(again, try ImageDirectory.readFile(file), "\(name)/\(f) did not encode back byte for byte")
                images += 1
            }
            // x ps: same pids, groups, sessions and names.
            let (pc, critPs) = try run("/usr/bin/crit", ["x", dir, "ps"])
            XCTAssertEqual(pc, 0, critPs)
            let critRows = critPs.split(separator: "\n").dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
                .map { "\($0[0]) \($0[1]) \($0[2]) \($0[3...].joined(separator: " "))" }.sorted()
            let (xc, ourPs) = try run(h.bin + "/cryo", ["image", "x", dir, "ps", "--json"])
            XCTAssertEqual(xc, 0, ourPs)
            let ours = ((try JSONSerialization.jsonObject(with: Data(ourPs.utf8))) as? [[String: Any]] ?? [])
                .map { "\($0["pid"]!) \($0["pgid"]!) \($0["sid"]!) \($0["comm"]!)" }.sorted()
            XCTAssertEqual(critRows, ours, "\(name): x ps")
            // x mems: the same ranges, in the same order.
            let (mc, critMems) = try run("/usr/bin/crit", ["x", dir, "mems"])
            XCTAssertEqual(mc, 0, critMems)
            let critRanges = critMems.split(separator: "\n").compactMap { l -> String? in
                let t = l.trimmingCharacters(in: .whitespaces)
                guard let r = t.split(separator: " ").first, r.contains("-"), r.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { return nil }
                return String(r)
            }
            let (yc, ourMems) = try run(h.bin + "/cryo", ["image", "x", dir, "mems", "--json"])
            XCTAssertEqual(yc, 0, ourMems)
            let ourRanges = ((try JSONSerialization.jsonObject(with: Data(ourMems.utf8))) as? [[String: Any]] ?? []).flatMap {
                (($0["mappings"] as? [[String: Any]]) ?? []).map { "\($0["start"]!)-\($0["end"]!)" }
            }
            XCTAssertEqual(critRanges, ourRanges, "\(name): x mems")
        }
        print("CritCompatTests: \(images) images decoded by both; \(tally.compared) values equal, \(tally.symbolic) printed symbolically by crit (not compared)")
        print("CritCompatTests: fields crit (Debian's criu package) does not show, as its schemas lack them: \(tally.onlyCryo.sorted().joined(separator: ", "))")
        XCTAssertGreaterThan(images, 60)
        XCTAssertGreaterThan(tally.compared, 1000)
    }

    func run(_ path: String, _ args: [String]) throws -> (Int32, String) { try CRHarness.capture(path, args) }
}
