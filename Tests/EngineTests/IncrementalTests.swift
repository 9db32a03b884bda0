import CKernel
import Foundation
import Glibc
import XCTest
@testable import Engine

/// Dirty tracking against a real child, the track store, restore sources through a parent
/// chain, and dedup.
final class IncrementalTests: XCTestCase {
    var dir = ""
    var children: [Int32] = []
    let base: UInt64 = 0x7f00_0000_0000

    override func setUp() { dir = ImageSamples.tempDir("incr") }
    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
        for c in children { kill(c, SIGKILL); var st: Int32 = 0; waitpid(c, &st, __WALL) }
        children = []
    }

    // MARK: page run sets

    func testPageRunSetOperations() {
        func r(_ a: UInt64, _ b: UInt64) -> PageRun { PageRun(start: a * 4096, end: b * 4096) }
        XCTAssertEqual(PageRuns.normalize([r(5, 6), r(0, 2), r(2, 3), r(1, 2)]), [r(0, 3), r(5, 6)])
        XCTAssertEqual(PageRuns.intersect([r(0, 10), r(20, 30)], [r(5, 25)]), [r(5, 10), r(20, 25)])
        XCTAssertEqual(PageRuns.subtract([r(0, 10), r(20, 30)], [r(2, 3), r(9, 21), r(29, 40)]), [r(0, 2), r(3, 9), r(21, 29)])
        let s = PageRuns.split([r(0, 10)], by: [r(2, 4), r(8, 12)])
        XCTAssertEqual(s.map(\.run), [r(0, 2), r(2, 4), r(4, 8), r(8, 10)])
        XCTAssertEqual(s.map(\.marked), [false, true, false, true])
        // Unchanged = tracked - written, and only what the parent holds.
        let plan = IncrementalPlan(scan: DirtyScan(tracked: [r(0, 10)], written: [r(3, 4)]), parentHas: [r(0, 8)])
        XCTAssertEqual(plan.unchanged, [r(0, 3), r(4, 8)])
    }

    // MARK: tracker against a real process

    /// A stopped child (a copy of this process that only loops in pause()), frozen by ptrace.
    func frozenChild() throws -> (Int32, FrozenTree) {
        let pid = ck_clone3_stopped_child(0, 0)
        guard pid > 0 else { throw XCTSkip("clone3 child: errno \(-pid)") }
        children.append(pid)
        usleep(20_000)
        return (pid, try TreeFreezer.freeze(root: pid))
    }

    func writeChild(_ pid: Int32, page: UInt64, byte: UInt8) throws {
        var b = [UInt8](repeating: byte, count: 4096)
        _ = try b.withUnsafeMutableBytes { try Sys.processVmWrite(pid: pid, local: $0.baseAddress!, remote: page, len: 4096) }
    }

    func testUffdTrackerReportsExactlyTheWrittenPagesAcrossRuns() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root") }
        guard DirtyTracking.availableBackend() == .uffdWriteProtect else { throw XCTSkip("no userfaultfd write-protect async here") }
        let (pid, tree) = try frozenChild()
        defer { tree.release() }
        let proc = ProcReader()
        let remote = try Remote(tid: pid, maps: try proc.maps(pid: pid))
        let len: UInt64 = 64 * 4096
        let region = try remote.syscall(.mmap, 0, len, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
        // Half the pages hold data before arming; the others were never touched.
        for i in 0..<32 { try writeChild(pid, page: region + UInt64(i) * 4096, byte: 1) }
        let mapping = [PageRun(start: region, end: region + len)]

        let tracker = try UffdWPTracker(pid: pid, parcel: nil)
        try tracker.arm(mappings: mapping, remote: remote)
        XCTAssertEqual(try tracker.scan(mappings: mapping), DirtyScan(tracked: mapping, written: []), "nothing written yet")

        // Writes to populated pages, to never-touched pages, and a run of three.
        let pages: [UInt64] = [3, 10, 11, 12, 40, 63]
        for p in pages { try writeChild(pid, page: region + p * 4096, byte: 2) }
        let scan = try tracker.scan(mappings: mapping)
        XCTAssertEqual(scan.tracked, mapping)
        XCTAssertEqual(scan.written, PageRuns.normalize(pages.map { PageRun(start: region + $0 * 4096, end: region + ($0 + 1) * 4096) }))
        XCTAssertEqual(try tracker.scan(mappings: mapping).written, [], "a scan re-arms what it reports")

        // Tracking outlives this "run": parked in a store, our fd closed, taken back.
        let sock = try TrackStore.makeSocket()
        defer { close(sock) }
        let store = try TrackStore(fd: sock)
        try store.put(tracker.parcel(startTime: 7))
        tracker.close()
        XCTAssertEqual(tracker.uffd, -1)
        // No fd of the userfaultfd is left in the target.
        for fd in try proc.fds(pid: pid) {
            XCTAssertFalse((try? proc.fdTarget(pid: pid, fd: fd))?.contains("userfaultfd") ?? false, "fd \(fd) in the target")
        }
        try writeChild(pid, page: region + 20 * 4096, byte: 3)
        let parcels = try store.takeAll()
        XCTAssertEqual(parcels.count, 1)
        let again = try UffdWPTracker(pid: pid, parcel: parcels[0])
        defer { again.close() }
        XCTAssertEqual(try again.scan(mappings: mapping).written, [PageRun(start: region + 20 * 4096, end: region + 21 * 4096)])

        // A mapping replaced at the same address is not tracked any more, whatever the record says.
        _ = try remote.syscall(.mmap, region, len / 2, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), UInt64(bitPattern: -1), 0)
        let after = try again.scan(mappings: mapping)
        XCTAssertEqual(after.tracked, [PageRun(start: region + len / 2, end: region + len)])
        try remote.finish()
    }

    // MARK: track store

    func testTrackStoreRoundTripKeepsFdsRangesAndOtherParcels() throws {
        let sock = try TrackStore.makeSocket()
        defer { close(sock) }
        let store = try TrackStore(fd: sock)
        var p: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]); close(p[1]) }
        let ranges = [PageRun(start: 0x1000, end: 0x3000), PageRun(start: 0x10000, end: 0x20000)]
        try store.put(TrackParcel(pid: 100, startTime: 5, backend: .uffdWriteProtect, fds: [p[1]], armed: ranges))
        try store.put(TrackParcel(pid: 200, startTime: 6, backend: .softDirty, fds: [], armed: []))
        let got = try store.takeAll()
        XCTAssertEqual(got.count, 2)
        XCTAssertEqual(got[0].pid, 100); XCTAssertEqual(got[0].startTime, 5); XCTAssertEqual(got[0].backend, .uffdWriteProtect)
        XCTAssertEqual(got[0].armed, ranges)
        XCTAssertEqual(got[1].pid, 200); XCTAssertEqual(got[1].backend, .softDirty); XCTAssertEqual(got[1].fds, [])
        // The fd that came back is the same pipe: what goes in comes out of our read end.
        XCTAssertEqual(got[0].fds.count, 1)
        XCTAssertNotEqual(got[0].fds[0], p[1])
        XCTAssertEqual(write(got[0].fds[0], "x", 1), 1)
        var c: UInt8 = 0
        XCTAssertEqual(read(p[0], &c, 1), 1)
        XCTAssertEqual(c, UInt8(ascii: "x"))
        got.forEach { $0.closeFds() }
        XCTAssertEqual(try store.takeAll().count, 0, "taking drains the store")

        // Garbage in the store is an error naming the fd, not a crash.
        XCTAssertEqual(send(sock, "nonsense", 8, 0), 8)
        XCTAssertThrowsError(try store.takeAll()) { XCTAssertTrue("\($0)".contains("fd \(sock)")) }
        // Something that is not a datagram socket is refused up front.
        XCTAssertThrowsError(try TrackStore(fd: p[0]))
    }

    // MARK: chains: restore sources and dedup

    /// A: pages 0-7 (0xA0+n). B: 0,1 and 5 rewritten (0xB0+n). C: 1 and 2 rewritten (0xC0+n).
    func makeChain() throws -> [ImageDirectory] {
        let dirs = try (1...3).map { try ImageDirectory(path: dir + "/\($0)", create: true) }
        let layout: [[(first: UInt64, count: UInt32, data: Bool)]] = [
            [(0, 8, true)],
            [(0, 2, true), (2, 3, false), (5, 1, true), (6, 2, false)],
            [(0, 1, false), (1, 2, true), (3, 5, false)],
        ]
        for (i, d) in dirs.enumerated() {
            try ImageSamples.write(d, pages: 8)
            var bytes: [UInt8] = []
            try d.writePagemap(pid: 4242, pagesID: 1, entries: layout[i].map {
                .init(vaddr: base + $0.first * 4096, nrPages: $0.count, flags: $0.data ? [.present] : [.parent])
            })
            for e in layout[i] where e.data {
                for n in e.first..<(e.first + UInt64(e.count)) {
                    bytes += [UInt8](repeating: UInt8(0xA0 + 0x10 * i) + UInt8(n), count: imagePageSize)
                }
            }
            let w = try d.pagesWriter(id: 1)
            try w.write(bytes)
            try w.finish()
            if i > 0 { try d.setParent(relativePath: "../\(i)") }
        }
        return dirs
    }

    /// The memory a restore from `d` fills, page by page, through PageSources (what restore uses).
    func restoredMemory(_ d: ImageDirectory) throws -> [UInt64: [UInt8]] {
        let sources = try PageSources(images: d, pid: 4242)
        var out: [UInt64: [UInt8]] = [:]
        for s in sources.segments {
            let (fd, _) = try XCTUnwrap(sources.fd(for: s))
            for p in 0..<s.nrPages {
                var b = [UInt8](repeating: 0, count: imagePageSize)
                XCTAssertEqual(pread(fd, &b, imagePageSize, off_t(s.source!.offset + Int(p) * imagePageSize)), imagePageSize)
                out[s.vaddr + p * 4096] = b
            }
        }
        return out
    }

    func testRestoreSourcesTakeEachPageFromTheNewestSnapshot() throws {
        let dirs = try makeChain()
        let mem = try restoredMemory(dirs[2])
        XCTAssertEqual((0..<8).map { mem[base + $0 * 4096]?.first }, [0xB0, 0xC1, 0xC2, 0xA3, 0xA4, 0xB5, 0xA6, 0xA7])
        // Each pages file opened once, whatever the number of segments from it.
        let sources = try PageSources(images: dirs[2], pid: 4242)
        XCTAssertEqual(Set(sources.segments.compactMap { sources.fd(for: $0)?.fd }).count, 3)
    }

    func testBrokenChainIsAnErrorNamingTheFileBeforeRestore() throws {
        var dirs = try makeChain()
        unlink(dirs[0].filePath(.pages, 1))
        XCTAssertThrowsError(try PageSources(images: dirs[2], pid: 4242)) {
            XCTAssertTrue("\($0)".contains(dirs[0].filePath(.pages, 1)), "\($0)")
        }
        dirs = try makeChain()
        XCTAssertEqual(truncate(dirs[1].filePath(.pages, 1), 4096), 0)
        XCTAssertThrowsError(try PageSources(images: dirs[2], pid: 4242)) {
            XCTAssertTrue("\($0)".contains(dirs[1].filePath(.pages, 1)), "\($0)")
        }
        dirs = try makeChain()
        unlink(dirs[1].path + "/parent")
        XCTAssertThrowsError(try PageSources(images: dirs[2], pid: 4242)) {
            XCTAssertTrue("\($0)".contains("parent"), "\($0)")
        }
    }

    func testDedupFreesOverwrittenPagesAndRestoreIsIdentical() throws {
        let dirs = try makeChain()
        let before = try restoredMemory(dirs[2])
        func blocks(_ d: ImageDirectory) -> Int { var st = stat(); stat(d.filePath(.pages, 1), &st); return Int(st.st_blocks) }
        func size(_ d: ImageDirectory) -> Int { var st = stat(); stat(d.filePath(.pages, 1), &st); return Int(st.st_size) }
        let blocksA = blocks(dirs[0]), sizeA = size(dirs[0])

        let stats = try Deduplicator(imagesDir: dirs[2].path).run()
        // A loses 0, 1, 2 and 5 (rewritten in B or C); B loses 1 (rewritten in C); C keeps all.
        XCTAssertEqual(stats.punchedBytes, 5 * 4096)
        XCTAssertEqual(try restoredMemory(dirs[2]), before, "restore after dedup fills the same memory")
        XCTAssertEqual(size(dirs[0]), sizeA, "sizes are kept, so pagemap offsets stay valid")
        XCTAssertLessThan(blocks(dirs[0]), blocksA)
        let a = try dirs[0].pagesReader(id: 1)
        for n in 0..<8 {
            let first = try a.read(offset: n * 4096, count: 1)[0]
            XCTAssertEqual(first, [0, 1, 2, 5].contains(n) ? 0 : UInt8(0xA0 + n), "page \(n) of the oldest snapshot")
        }
        let b = try dirs[1].pagesReader(id: 1)
        XCTAssertEqual(try b.read(offset: 0, count: 1)[0], 0xB0, "B's page 0 still counts for C")
        XCTAssertEqual(try b.read(offset: 4096, count: 1)[0], 0, "B's page 1 was rewritten by C")
        XCTAssertEqual(try b.read(offset: 8192, count: 1)[0], 0xB5, "B's page 5 still counts for C")
        // A second run punches the same ranges again and changes nothing.
        XCTAssertEqual(try Deduplicator(imagesDir: dirs[2].path).run().punchedBytes, 5 * 4096,
                       "punching is idempotent (already-punched ranges are punched again, harmlessly)")
        XCTAssertEqual(try restoredMemory(dirs[2]), before)
    }
}

extension IncrementalTests {
    /// A pre-dump copies from a running task: pages that vanished meanwhile are skipped, and
    /// the pagemap lists exactly what was copied.
    func testTolerantCopySkipsPagesThatVanished() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root") }
        let (pid, tree) = try frozenChild()
        defer { tree.release() }
        let remote = try Remote(tid: pid, maps: try ProcReader().maps(pid: pid))
        let len: UInt64 = 16 * 4096
        let region = try remote.syscall(.mmap, 0, len, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
        for i in 0..<16 { try writeChild(pid, page: region + UInt64(i) * 4096, byte: UInt8(i + 1)) }
        // Pages 4-7 go away after the layout was taken.
        try remote.syscall(.munmap, region + 4 * 4096, 4 * 4096)
        try remote.finish()
        let pieces = [MemoryDumper.Piece(run: PageRun(start: region, end: region + len), inParent: false, readable: true),
                      MemoryDumper.Piece(run: PageRun(start: region + len, end: region + len + 4096), inParent: true, readable: true)]
        let images = try ImageDirectory(path: dir + "/copy", create: true)
        let w = try LocalPageTransport(images: images).open(.pagemap, id: Int(pid), pagesID: 1)
        let (kept, missed) = try TolerantCopier(pid: pid).copy(pieces, to: w)
        try w.finish()
        // The pagemap the sink wrote lists exactly what was copied, merged as a dump writes it.
        XCTAssertEqual(try images.readPagemap(pid: pid).entries.map { [$0.vaddr, UInt64($0.nrPages), UInt64($0.flags)] },
                       [[region, 4, 4], [region + 8 * 4096, 8, 4], [region + len, 1, 1]])
        XCTAssertEqual(missed, 4)
        XCTAssertEqual(kept.map(\.run), [PageRun(start: region, end: region + 4 * 4096), PageRun(start: region + 8 * 4096, end: region + len),
                                         PageRun(start: region + len, end: region + len + 4096)])
        XCTAssertEqual(kept.map(\.inParent), [false, false, true])
        let r = try images.pagesReader(id: 1)
        XCTAssertEqual(r.size, 12 * 4096)
        XCTAssertEqual((0..<12).map { try! r.read(offset: $0 * 4096, count: 1)[0] }, [1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16])
    }
}

extension IncrementalTests {
    /// A chain far longer than a handful: 200 snapshots, each rewriting one page.
    func testLongChainResolvesEveryPageToItsNewestSnapshot() throws {
        let n = 200
        var dirs: [ImageDirectory] = []
        for i in 0..<n {
            let d = try ImageDirectory(path: dir + "/s\(i)", create: true)
            var inv = Img_InventoryEntry(); inv.imgVersion = 2
            try d.write(.inventory, entry: inv)
            // Snapshot i holds page i % 16 itself; the other 15 pages are in its parent.
            let own = UInt64(i % 16)
            var entries: [Img_PagemapEntry] = []
            if i == 0 {
                entries = [.init(vaddr: base, nrPages: 16, flags: [.present])]
            } else {
                if own > 0 { entries.append(.init(vaddr: base, nrPages: UInt32(own), flags: [.parent])) }
                entries.append(.init(vaddr: base + own * 4096, nrPages: 1, flags: [.present]))
                if own < 15 { entries.append(.init(vaddr: base + (own + 1) * 4096, nrPages: UInt32(15 - own), flags: [.parent])) }
            }
            try d.writePagemap(pid: 4242, pagesID: 1, entries: entries)
            let w = try d.pagesWriter(id: 1)
            if i == 0 { try w.write([UInt8](repeating: 0, count: 16 * 4096)) } else { try w.write([UInt8](repeating: UInt8(i % 256), count: 4096)) }
            try w.finish()
            if i > 0 { try d.setParent(relativePath: "../s\(i - 1)") }
            dirs.append(d)
        }
        let mem = try restoredMemory(dirs[n - 1])
        // Page p was last written by the newest snapshot i with i % 16 == p.
        for p in 0..<16 {
            let newest = (0..<n).last { $0 % 16 == p && $0 > 0 }!
            XCTAssertEqual(mem[base + UInt64(p) * 4096]?.first, UInt8(newest % 256), "page \(p)")
        }
    }
}

extension IncrementalTests {
    func testSparseReservationsAreNotArmed() {
        func entry(_ start: UInt64, mib: UInt64, rssKB: UInt64) -> ProcSmapsEntry {
            let m = ProcMapping(start: start, end: start + mib << 20, readable: true, writable: true, executable: false,
                                shared: false, offset: 0, devMajor: 0, devMinor: 0, inode: 0, path: "")
            return ProcSmapsEntry(mapping: m, fields: ["Rss": rssKB, "Swap": 0])
        }
        let smaps = [entry(0x1000_0000, mib: 64 << 10, rssKB: 10 << 10),   // 64 GiB, 10 MiB touched
                     entry(0x20_0000_0000, mib: 1024, rssKB: 1 << 20),       // 1 GiB, all touched
                     entry(0x30_0000_0000, mib: 32, rssKB: 0)]               // small: always armed
        XCTAssertEqual(MemoryDumper.sparseMappings(smaps), [0x1000_0000])
        let armed = MemoryDumper.trackable(smaps.map(\.mapping), sparse: MemoryDumper.sparseMappings(smaps))
        XCTAssertEqual(armed.map(\.start), [0x20_0000_0000, 0x30_0000_0000])
    }
}

extension IncrementalTests {
    /// A parcel whose mappings are all gone gives way to a new userfaultfd, which then tracks.
    func testTrackerStartsOverWhenNothingSurvived() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root") }
        guard DirtyTracking.availableBackend() == .uffdWriteProtect else { throw XCTSkip("no userfaultfd write-protect async here") }
        let (pid, tree) = try frozenChild()
        defer { tree.release() }
        let remote = try Remote(tid: pid, maps: try ProcReader().maps(pid: pid))
        let len: UInt64 = 8 * 4096
        let prot = UInt64(PROT_READ | PROT_WRITE), flags = UInt64(MAP_PRIVATE | MAP_ANONYMOUS)
        let a = try remote.syscall(.mmap, 0, len, prot, flags, UInt64(bitPattern: -1), 0)
        let tracker = try UffdWPTracker(pid: pid, parcel: nil)
        defer { tracker.close() }
        try tracker.arm(mappings: [PageRun(start: a, end: a + len)], remote: remote)
        try remote.syscall(.munmap, a, len)
        let b = try remote.syscall(.mmap, 0, len, prot, flags, UInt64(bitPattern: -1), 0)
        let mapping = [PageRun(start: b, end: b + len)]
        XCTAssertEqual(try tracker.scan(mappings: mapping).tracked, [], "a new mapping is not tracked")
        XCTAssertEqual(tracker.uffd, -1, "the old userfaultfd was given up")
        try tracker.arm(mappings: mapping, remote: remote)
        XCTAssertGreaterThanOrEqual(tracker.uffd, 0)
        try writeChild(pid, page: b + 4096, byte: 9)
        XCTAssertEqual(try tracker.scan(mappings: mapping), DirtyScan(tracked: mapping, written: [PageRun(start: b + 4096, end: b + 8192)]))
        try remote.finish()
    }
}
