import Foundation
import Glibc
import XCTest
import ZDTMCore

/// CRIU's own reader, crit, must decode every image a real dump writes.
final class CritImagesTests: XCTestCase {
    func testCritDecodesARealDump() throws {
        guard getuid() == 0 else {
            print("CritImagesTests: skipped, dumping needs root")
            throw XCTSkip("needs root")
        }
        guard access("/usr/bin/crit", X_OK) == 0 else {
            print("CritImagesTests: skipped, /usr/bin/crit is not installed (Debian package criu)")
            throw XCTSkip("crit not installed")
        }
        let bin = Locations.selfDir()
        let dir = try Locations.makeRunDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Images beyond files.img that fd kinds write, and the magic crit must name in each.
        let fdImages: [String: [(file: String, magic: String)]] = [
            "pipe00": [("pipes-data.img", "PIPES_DATA")],
            "fifo00": [("fifo-data.img", "FIFO_DATA")],
            "unix02": [("sk-queues.img", "SK_QUEUES")],
            "unix01": [("sk-queues.img", "SK_QUEUES")],
            "memfd00": [("memfd.img", "MEMFD_INODE"), ("pagemap-shmem-1.img", "PAGEMAP")],
        ]
        // Images named by a socket inode: one tcp-stream image per established connection.
        let tcpStreams = ["tcp00": 2, "tcp02": 2]
        // Workloads with file mappings, several kinds of anonymous memory and open files, and
        // one for each fd kind beyond regular files.
        for name in ["maps01", "file00", "sigact00", "sparse00", "pipe00", "fifo00", "unix01", "unix02", "eventfd00",
                     "epoll00", "signalfd00", "timerfd00", "inotify00", "memfd00", "udp00", "tcp00", "tcp01", "tcp02", "deleted00", "shm00", "tree00"] {
            let work = dir + "/" + name
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            let starter = try Subprocess.spawn(bin + "/" + name, ["--pidfile=\(work)/pid", "--outfile=\(work)/out"], cwd: work, output: work + "/start.log")
            _ = try Subprocess.wait(starter, timeout: 30)
            let pid = try XCTUnwrap(Int32((try String(contentsOfFile: work + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            let images = work + "/img"
            let (dc, dout) = try run(bin + "/cryo", ["dump", "-t", "\(pid)", "-D", images, "-v4", "-o", work + "/dump.log"])
            guard dc == 0 else {
                kill(pid, SIGKILL)  // a failed dump leaves our workload running
                return XCTFail("cryo dump \(name): \(dout)")
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: images).filter { $0.hasSuffix(".img") }.sorted()
            XCTAssertTrue(files.contains("inventory.img") && files.contains("core-\(pid).img") && files.contains("mm-\(pid).img"), "\(files)")
            for (file, magic) in fdImages[name] ?? [] {
                XCTAssertTrue(files.contains(file), "\(name): no \(file) in \(files)")
                let (code, out) = try run("/usr/bin/crit", ["decode", "-i", images + "/" + file])
                XCTAssertEqual(code, 0, "crit decode \(name)/\(file): \(out)")
                XCTAssertTrue(out.contains("\"magic\": \"\(magic)\""), "crit decode \(name)/\(file): \(out.prefix(300))")
            }
            if let kind = ["pipe00": "PIPE", "fifo00": "FIFO", "unix01": "UNIXSK", "eventfd00": "EVENTFD", "epoll00": "EVENTPOLL",
                           "signalfd00": "SIGNALFD", "timerfd00": "TIMERFD", "inotify00": "INOTIFY", "memfd00": "MEMFD", "udp00": "INETSK", "tcp01": "INETSK"][name] {
                let (code, out) = try run("/usr/bin/crit", ["decode", "-i", images + "/files.img"])
                XCTAssertEqual(code, 0, out)
                XCTAssertTrue(out.contains("\"type\": \"\(kind)\""), "\(name): files.img has no \(kind) entry: \(out.prefix(2000))")
            }
            if let want = tcpStreams[name] {
                let streams = files.filter { $0.hasPrefix("tcp-stream-") }
                XCTAssertEqual(streams.count, want, "\(name): \(files)")
                var queued = 0
                for f in streams {
                    let (code, out) = try run("/usr/bin/crit", ["decode", "-i", images + "/" + f])
                    XCTAssertEqual(code, 0, "crit decode \(name)/\(f): \(out.prefix(300))")
                    XCTAssertTrue(out.contains("\"magic\": \"TCP_STREAM\"") && out.contains("\"inq_seq\"") && out.contains("\"snd_wnd\""), String(out.prefix(600)))
                    // crit splits the raw tail into the two queues, base64.
                    XCTAssertTrue(out.contains("\"inq\"") && out.contains("\"outq\""), String(out.prefix(600)))
                    if let r = out.range(of: #""inq_len": (\d+)"#, options: .regularExpression) {
                        queued += Int(out[r].split(separator: " ").last!) ?? 0
                    }
                }
                // The workloads keep data waiting in the receive queues at dump time.
                XCTAssertGreaterThan(queued, 0, "\(name): no bytes in any receive queue")
                // --pretty: crit names the state and protocol numbers only then.
                let (code, out) = try run("/usr/bin/crit", ["decode", "--pretty", "-i", images + "/files.img"])
                XCTAssertEqual(code, 0, out)
                XCTAssertTrue(out.contains("\"state\": \"ESTABLISHED\"") && out.contains("\"proto\": \"TCP\""), "\(name): no established TCP entry")
            }
            if name == "tcp01" {
                let (code, out) = try run("/usr/bin/crit", ["decode", "--pretty", "-i", images + "/files.img"])
                XCTAssertEqual(code, 0, out)
                XCTAssertTrue(out.contains("\"state\": \"LISTEN\"") && out.contains("\"backlog\": 5"), "tcp01: no listening TCP entry with its backlog")
            }
            for f in files {
                let (code, out) = try run("/usr/bin/crit", ["decode", "-i", images + "/" + f])
                if f.hasPrefix("pages-") {
                    // Raw page data has no header; crit says so and refuses, as it does for CRIU's.
                    XCTAssertTrue(out.contains("raw data"), "crit on \(f): \(out)")
                } else {
                    XCTAssertEqual(code, 0, "crit decode \(name)/\(f): \(out)")
                }
            }
            if name == "sparse00" {
                // 64 GiB reserved, 10 MiB touched: the pages image holds the touched pages only.
                let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: images + "/pages-\(pid).img")[.size] as? Int)
                XCTAssertGreaterThanOrEqual(size, 10 << 20)
                XCTAssertLessThan(size, 16 << 20, "sparse mapping produced a \(size)-byte image")
            }
            if name == "deleted00" {
                // The deleted file travels as a ghost image that crit reads, bytes included.
                XCTAssertTrue(files.contains("remap-fpath.img") && files.contains("ghost-file-1.img"), "\(files)")
                let (gc, gout) = try run("/usr/bin/crit", ["decode", "-i", images + "/ghost-file-1.img"])
                XCTAssertEqual(gc, 0, gout)
                XCTAssertTrue(gout.contains("\"size\": 3145851") && gout.contains("extra"), String(gout.prefix(300)))
            }
            let (xc, xout) = try run("/usr/bin/crit", ["x", images, "ps"])
            XCTAssertEqual(xc, 0, xout)
            XCTAssertTrue(xout.contains("\(pid)") && xout.contains(name), xout)
            let (mc, mout) = try run("/usr/bin/crit", ["x", images, "mems"])
            XCTAssertEqual(mc, 0, mout)
            let (fc, fout) = try run("/usr/bin/crit", ["x", images, "fds"])
            XCTAssertEqual(fc, 0, fout)
            XCTAssertTrue(fout.contains("cwd: \(work)"), fout)
        }
    }

    func run(_ path: String, _ args: [String]) throws -> (Int32, String) { try CRHarness.capture(path, args) }
}
