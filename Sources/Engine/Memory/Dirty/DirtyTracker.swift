import Glibc
import Logging

public enum DirtyTrackingError: Error, CustomStringConvertible {
    case unavailable(pid: Int32, reason: String)
    case kernel(pid: Int32, call: String, errno: Int32, range: PageRun?)

    public var description: String {
        switch self {
        case .unavailable(let p, let r): return "pid \(p): dirty-page tracking is not available: \(r)"
        case .kernel(let p, let c, let e, let r):
            let at = r.map { " on 0x\(String($0.start, radix: 16))-0x\(String($0.end, radix: 16))" } ?? ""
            return "pid \(p): \(c)\(at) failed: \(String(cString: strerror(e))) (errno \(e))"
        }
    }
}

/// What a tracker knows at a snapshot: the ranges it watched without a break since the previous
/// snapshot, and the pages written in them since then. Anything outside `tracked` (mappings
/// created since, ranges that could not be armed) is unknown and must be dumped whole.
public struct DirtyScan: Sendable, Equatable {
    public var tracked: [PageRun]
    public var written: [PageRun]
    public init(tracked: [PageRun], written: [PageRun]) { self.tracked = tracked; self.written = written }
}

/// Finds the pages a task wrote between two snapshots. One back end per kernel mechanism
/// (userfaultfd write-protect + PAGEMAP_SCAN, soft-dirty); the dump code sees only this.
/// Every call is made with the task frozen.
public protocol DirtyTracker: AnyObject {
    var pid: Int32 { get }
    var backend: DirtyTrackingBackend { get }
    /// Reports what was written in `mappings` since the last arm, and re-arms those pages, so
    /// the next scan reports only writes made after this one.
    func scan(mappings: [PageRun]) throws -> DirtyScan
    /// Starts watching every range of `mappings` not watched yet (first snapshot, new mappings).
    /// `remote` is the frozen task, for what must be done from inside it.
    func arm(mappings: [PageRun], remote: Remote) throws
    /// What the next cryo run needs to carry on, its fds included (still ours: park, then close).
    func parcel(startTime: UInt64) -> TrackParcel
    /// Drops the tracking this run holds (after parking, or to give tracking up).
    func close()
}

public enum DirtyTracking {
    /// The back end this kernel offers, as `cryo check` reports it.
    public static func availableBackend() -> DirtyTrackingBackend {
        KernelCheck.dirtyBackend(uffdWP: KernelCheck.probeUffdWPAsync().available && KernelCheck.probePagemapScan().available,
                                 softDirty: KernelCheck.probeSoftDirty().available)
    }

    /// A tracker for `pid`, carrying on from `parcel` when one was parked.
    public static func make(pid: Int32, parcel: TrackParcel?, backend: DirtyTrackingBackend) throws -> any DirtyTracker {
        switch parcel?.backend ?? backend {
        case .uffdWriteProtect: return try UffdWPTracker(pid: pid, parcel: parcel)
        case .softDirty: return try SoftDirtyTracker(pid: pid, parcel: parcel)
        case .none: throw DirtyTrackingError.unavailable(pid: pid, reason: "neither userfaultfd write-protect with PAGEMAP_SCAN nor soft-dirty (see cryo check)")
        }
    }
}
