import Glibc

/// Dump side of deleted-but-open files. Their bytes exist nowhere else, so they go into a
/// ghost image (one per inode, shared by every fd and mapping of it); each file entry keeps
/// the original path and a remap-fpath entry points it at the ghost, as CRIU does.
final class GhostFileDumper: @unchecked Sendable {
    /// CRIU's default ghost limit is 1 MiB; larger deleted files are common enough (logs, the
    /// binary of an upgraded service) that cryo keeps up to this much, and refuses beyond.
    static let sizeLimit: UInt64 = 256 << 20
    let images: ImageDirectory
    private var byInode: [String: UInt32] = [:]
    private var nextGhost: UInt32 = 1
    private(set) var remaps: [Img_RemapFilePathEntry] = []

    init(images: ImageDirectory) { self.images = images }

    /// The regular-file entry for `path` (as /proc shows it, " (deleted)" included), whose
    /// bytes are read through `source`.
    func entry(path: String, source: String, pid: Int32, id: UInt32, flags: UInt32, pos: UInt64) throws -> Img_RegFileEntry {
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw DumpError.unsupported(pid: pid, what: "deleted file \(path): cannot open \(source) (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw DumpError.unsupported(pid: pid, what: "deleted file \(path) that is not a regular file")
        }
        let size = UInt64(st.st_size)
        let key = "\(st.st_dev):\(st.st_ino)"
        let ghost: UInt32
        if let g = byInode[key] {
            ghost = g
        } else {
            guard size <= GhostFileDumper.sizeLimit else {
                throw DumpError.unsupported(pid: pid, what: "deleted file \(path) of \(size) bytes (ghost limit \(GhostFileDumper.sizeLimit))")
            }
            ghost = nextGhost; nextGhost += 1
            var g = Img_GhostFileEntry()
            g.uid = st.st_uid; g.gid = st.st_gid; g.mode = st.st_mode
            g.dev = UInt32(truncatingIfNeeded: st.st_dev); g.ino = UInt64(st.st_ino)
            var at = Img_Timeval(); at.tvSec = UInt64(st.st_atim.tv_sec); at.tvUsec = UInt64(st.st_atim.tv_nsec / 1000)
            var mt = Img_Timeval(); mt.tvSec = UInt64(st.st_mtim.tv_sec); mt.tvUsec = UInt64(st.st_mtim.tv_nsec / 1000)
            g.atim = at; g.mtim = mt
            g.size = size
            try images.writeGhost(id: ghost, entry: g, from: fd, size: size, source: path)
            byInode[key] = ghost
        }
        var r = RegularFile.entryFor(path: String(path.dropLast(" (deleted)".count)), id: id, flags: flags, pos: pos,
                                     size: size, mode: st.st_mode)
        r.deleted = true
        var m = Img_RemapFilePathEntry()
        m.origID = id; m.remapID = ghost; m.remapType = .ghost
        remaps.append(m)
        return r
    }
}
