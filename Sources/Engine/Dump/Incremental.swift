import Foundation
import Glibc
import Logging

/// Which pages of one process an incremental snapshot may leave to its parent chain.
struct IncrementalPlan {
    /// Pages tracked without a break since the parent snapshot, not written since, and held by
    /// the parent chain. Everything else that holds data is written out again.
    let unchanged: [PageRun]

    /// `parentHas` comes from the parent's images, so a page the tracker believes unchanged but
    /// that the parent never got (a pre-dump could not read it) is still dumped.
    init(scan: DirtyScan, parentHas: [PageRun]) {
        unchanged = PageRuns.intersect(PageRuns.subtract(scan.tracked, scan.written), parentHas)
    }

    /// The pages of `pid` the chain starting at `parent` can restore.
    static func pagesHeld(by parent: ImageDirectory, pid: Int32) throws -> [PageRun] {
        guard parent.exists(.pagemap, Int(pid)) else { return [] }
        let segments = try parent.resolvePages(pid: Int(pid))
        return PageRuns.normalize(segments.filter { $0.source != nil }.map {
            PageRun(start: $0.vaddr, end: $0.vaddr + $0.nrPages * pageSize)
        })
    }
}

/// The incremental part of one dump or pre-dump of one process: takes its tracking back from
/// the track store, scans and re-arms it while the task is frozen, and parks it again when the
/// snapshot is written. A failed snapshot drops the tracking instead (scanning re-armed pages
/// whose new contents never reached an image; the next snapshot must not trust it), which
/// unregisters it and leaves the process as it was.
final class TrackingSession {
    let pid: Int32
    let store: TrackStore?
    let startTime: UInt64
    private var others: [TrackParcel] = []
    private(set) var tracker: (any DirtyTracker)?
    private let log = Logger(label: "dirty")
    private var done = false

    /// Takes every parcel from the store (putting back the other processes' at the end).
    init(pid: Int32, storeFd: Int32?, proc: ProcReader) throws {
        self.pid = pid
        startTime = try proc.stat(pid: pid).starttime
        store = try storeFd.map { try TrackStore(fd: $0) }
        var mine: TrackParcel?
        for p in try store?.takeAll() ?? [] {
            if p.pid != pid { others.append(p); continue }
            if p.startTime == startTime && mine == nil { mine = p; continue }
            // Left by an earlier process with this pid (or a duplicate): useless now.
            log.info("pid \(pid): dropping a stale tracking parcel (start time \(p.startTime), process started at \(startTime))")
            p.closeFds()
        }
        do {
            let backend = mine?.backend ?? DirtyTracking.availableBackend()
            tracker = try DirtyTracking.make(pid: pid, parcel: mine, backend: backend)
        } catch {
            putBackOthers()
            done = true
            throw error
        }
        if mine == nil { log.info("pid \(pid): no tracking from an earlier run: every page is dumped") }
    }

    /// With the task frozen: what changed since the last snapshot, then arms what is not armed.
    func scanAndArm(maps: [ProcMapping], remote: Remote, proc: ProcReader) throws -> DirtyScan {
        guard let tracker else { return DirtyScan(tracked: [], written: []) }
        let mappings = MemoryDumper.trackable(maps, sparse: MemoryDumper.sparseMappings(try proc.smaps(pid: pid)))
        let scan = try tracker.scan(mappings: mappings)
        try tracker.arm(mappings: mappings, remote: remote)
        log.info("pid \(pid): \(tracker.backend.rawValue): \(scan.tracked.reduce(0) { $0 + $1.pageCount }) pages tracked, \(scan.written.reduce(0) { $0 + $1.pageCount }) written since the last snapshot")
        return scan
    }

    /// The snapshot is written: hand the tracking on to the next run.
    func park() throws {
        guard !done else { return }
        done = true
        defer { putBackOthers(); tracker?.close(); tracker = nil }
        guard let store, let tracker else {
            log.warning("pid \(pid): no --track-store: tracking ends with this run, the next snapshot will be a full one")
            return
        }
        try store.put(tracker.parcel(startTime: startTime))
    }

    /// The snapshot failed, or the process is gone: tracking ends here.
    func drop() {
        guard !done else { return }
        done = true
        tracker?.close()
        tracker = nil
        putBackOthers()
    }

    private func putBackOthers() {
        for p in others {
            do { try store?.put(p) } catch { log.error("could not put back the tracking of pid \(p.pid): \(error)") }
            p.closeFds()
        }
        others = []
    }

    deinit { drop() }
}

enum Incremental {
    /// With `root` frozen: takes its tracking back, scans and re-arms it, and when there is a
    /// previous snapshot, checks its chain, links it as `parent` and works out what it holds.
    static func prepare(root: Int32, imagesDir: ImageDirectory, prev: String?, storeFd: Int32?,
                        proc: ProcReader) throws -> (session: TrackingSession, plan: IncrementalPlan?) {
        var parent: ImageDirectory?
        if let prev {
            let target = prev.hasPrefix("/") ? prev : imagesDir.path + "/" + prev
            let p: ImageDirectory
            do { p = try ImageDirectory(path: target) } catch {
                throw ImageError.chain(dir: imagesDir.path, reason: "previous images \(target): \(error)")
            }
            guard p.exists(.inventory) else {
                throw ImageError.chain(dir: imagesDir.path, reason: "previous images \(target) have no inventory.img (not a finished dump)")
            }
            _ = try p.chain()
            parent = p
        }
        let session = try TrackingSession(pid: root, storeFd: storeFd, proc: proc)
        do {
            let maps = try proc.maps(pid: root)
            let remote = try Remote(tid: root, maps: maps)
            let scan: DirtyScan
            do { scan = try session.scanAndArm(maps: maps, remote: remote, proc: proc) } catch { try? remote.finish(); throw error }
            try remote.finish()
            guard let parent, let prev else { return (session, nil) }
            let plan = IncrementalPlan(scan: scan, parentHas: try IncrementalPlan.pagesHeld(by: parent, pid: root))
            try imagesDir.setParent(relativePath: prev)
            return (session, plan)
        } catch {
            session.drop()
            throw error
        }
    }
}
