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

/// The incremental part of one dump or pre-dump of a tree: takes the tree's tracking back
/// from the track store (one parcel per process), scans and re-arms each process while the
/// tree is frozen, and parks it all again when the snapshot is written. A failed snapshot
/// drops the tracking instead (scanning re-armed pages whose new contents never reached an
/// image; the next snapshot must not trust it), which unregisters it and leaves the
/// processes as they were. Parcels of processes outside the tree go back untouched.
final class TreeTracking {
    let store: TrackStore?
    private(set) var trackers: [Int32: (tracker: any DirtyTracker, startTime: UInt64)] = [:]
    private var others: [TrackParcel] = []
    /// Without a track store: the keeper that holds the tracking between runs (TrackKeeper).
    /// The connection stays open for the whole run so the keeper waits for what we park.
    private var keeperName: String?
    private var keeper: TrackKeeperClient?
    private let log = Logger(label: "dirty")
    private var done = false

    init(pids: [Int32], storeFd: Int32?, proc: ProcReader) throws {
        store = try storeFd.map { try TrackStore(fd: $0) }
        var starts: [Int32: UInt64] = [:]
        for pid in pids { starts[pid] = try proc.stat(pid: pid).starttime }
        var taken: [TrackParcel] = []
        if let store {
            taken = try store.takeAll()
        } else if let name = TrackKeeper.name {
            keeperName = name
            do {
                keeper = try TrackKeeperClient.connect(name: name)
                taken = try keeper?.take(pids.map { ($0, starts[$0]!) }) ?? []
            } catch {
                log.warning("\(error); this snapshot is a full one")
                keeper = nil
            }
        }
        var mine: [Int32: TrackParcel] = [:]
        for p in taken {
            guard let start = starts[p.pid] else { others.append(p); continue }
            if p.startTime == start && mine[p.pid] == nil { mine[p.pid] = p; continue }
            // Left by an earlier process with this pid (or a duplicate): useless now.
            log.info("pid \(p.pid): dropping a stale tracking parcel (start time \(p.startTime), process started at \(start))")
            p.closeFds()
        }
        do {
            for pid in pids {
                let parcel = mine.removeValue(forKey: pid)
                let backend = parcel?.backend ?? DirtyTracking.availableBackend()
                trackers[pid] = (try DirtyTracking.make(pid: pid, parcel: parcel, backend: backend), starts[pid]!)
                if parcel == nil { log.info("pid \(pid): no tracking from an earlier run: every page is dumped") }
            }
        } catch {
            for p in mine.values { p.closeFds() }
            drop()
            throw error
        }
    }

    /// With `pid` frozen: what changed since the last snapshot, then arms what is not armed.
    func scanAndArm(pid: Int32, maps: [ProcMapping], remote: Remote, proc: ProcReader) throws -> DirtyScan {
        guard let tracker = trackers[pid]?.tracker else { return DirtyScan(tracked: [], written: []) }
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
        defer { putBackOthers(); for t in trackers.values { t.tracker.close() }; trackers = [:]; keeper = nil }
        guard let store else {
            guard let keeperName, !trackers.isEmpty else {
                if !trackers.isEmpty { log.warning("no --track-store and no keeper (CRYO_TRACK_KEEPER=off): tracking ends with this run, the next snapshot will be a full one") }
                return
            }
            try parkInKeeper(keeperName)
            return
        }
        for (_, t) in trackers.sorted(by: { $0.key < $1.key }) { try store.put(t.tracker.parcel(startTime: t.startTime)) }
    }

    /// A put replaces what the keeper holds for that pid, so a retry after a lost connection
    /// (the keeper exiting as we connected) is safe.
    private func parkInKeeper(_ name: String) throws {
        var attempt = 0
        while true {
            do {
                let k: TrackKeeperClient
                if let keeper { k = keeper } else { k = try TrackKeeperClient.connectOrStart(name: name, idleSeconds: TrackKeeper.idleSeconds) }
                keeper = k
                for (pid, t) in trackers.sorted(by: { $0.key < $1.key }) {
                    if try !k.put(t.tracker.parcel(startTime: t.startTime)) {
                        log.info("pid \(pid): the keeper refused its tracking (the process is gone)")
                    }
                }
                log.info("tracking of \(trackers.count) process(es) kept by @\(name) until the next snapshot")
                return
            } catch {
                keeper = nil
                attempt += 1
                if attempt >= 3 { throw error }
                log.info("keeper @\(name): \(error); trying again")
            }
        }
    }

    /// The snapshot failed, or the processes are gone: tracking ends here.
    func drop() {
        guard !done else { return }
        done = true
        for t in trackers.values { t.tracker.close() }
        trackers = [:]
        keeper = nil
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
    /// With the tree frozen: takes its tracking back, scans and re-arms every process, and when
    /// there is a previous snapshot, checks its chain, links it as `parent` and works out what
    /// it holds of each process.
    static func prepare(pids: [Int32], imagesDir: ImageDirectory, prev: String?, storeFd: Int32?,
                        proc: ProcReader, pages: PageTransport, imagePid: (Int32) -> Int32 = { $0 }) throws -> (tracking: TreeTracking, plans: [Int32: IncrementalPlan]) {
        var parent: ImageDirectory?
        if let prev {
            let target = prev.hasPrefix("/") ? prev : imagesDir.path + "/" + prev
            let p: ImageDirectory
            if let r = imagesDir.store as? PreviousSnapshotResolving { p = ImageDirectory(store: try r.previous(prev)) } else {
                do { p = try ImageDirectory(path: target) } catch {
                    throw ImageError.chain(dir: imagesDir.path, reason: "previous images \(target): \(error)")
                }
            }
            guard p.exists(.inventory) else {
                throw ImageError.chain(dir: imagesDir.path, reason: "previous images \(target) have no inventory.img (not a finished dump)")
            }
            _ = try p.chain()
            parent = p
        }
        let tracking = try TreeTracking(pids: pids, storeFd: storeFd, proc: proc)
        do {
            var plans: [Int32: IncrementalPlan] = [:]
            for pid in pids {
                let maps = try proc.maps(pid: pid)
                let remote = try Remote(tid: pid, maps: maps)
                let scan: DirtyScan
                do { scan = try tracking.scanAndArm(pid: pid, maps: maps, remote: remote, proc: proc) } catch { try? remote.finish(); throw error }
                try remote.finish()
                if let parent { plans[pid] = IncrementalPlan(scan: scan, parentHas: try pages.pagesInParent(pid: imagePid(pid), parent: parent)) }
            }
            if let prev, parent != nil { try imagesDir.setParent(relativePath: prev) }
            return (tracking, plans)
        } catch {
            tracking.drop()
            throw error
        }
    }
}
