import Foundation

/// A time namespace: its CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets (CRIU's timens-ID.img).
/// The kernel takes offsets only before a task enters the namespace, so the restore makes
/// it in an intermediate that clones the root into it (ck_clone3_stopped_child_timens).
/// The offsets come back as they were: the clocks the tree reads go on from where the
/// machine's are, as after any restore on the same machine (CRIU does the same).
enum TimeNamespace: NamespaceContents {
    static let kind = NamespaceKind.time

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let o = try proc.timeOffsets(pid: pid)
        var e = Img_TimensEntry()
        e.monotonic.tvSec = UInt64(bitPattern: o.monotonic.sec); e.monotonic.tvNsec = UInt64(bitPattern: o.monotonic.nsec)
        e.boottime.tvSec = UInt64(bitPattern: o.boottime.sec); e.boottime.tvNsec = UInt64(bitPattern: o.boottime.nsec)
        try images.write(.timens, id: Int(id), entry: e)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.timens, Int(id)) else {
            throw NamespaceError.restore(kind: "time", reason: "no \(ImageKind.timens.fileName(Int(id))) (a namespace dumped as external cannot be restored yet)")
        }
    }

    /// Made with the root.
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}

    static func offsets(id: UInt32, images: ImageDirectory) throws -> TimeOffsets {
        let e = try images.readOne(.timens, id: Int(id), as: Img_TimensEntry.self)
        var o = TimeOffsets()
        o.monotonic = (Int64(bitPattern: e.monotonic.tvSec), Int64(bitPattern: e.monotonic.tvNsec))
        o.boottime = (Int64(bitPattern: e.boottime.tvSec), Int64(bitPattern: e.boottime.tvNsec))
        return o
    }
}
