import Glibc

/// Restore side of deleted-but-open files: each ghost image becomes a real file again at its
/// original path, for as long as the tasks need to open and map it, and is then unlinked, so
/// /proc shows "PATH (deleted)" as before the dump. If the path is taken by a new file, the
/// ghost is made beside it under another name (the fd then reads that name, deleted).
final class GhostFiles {
    private(set) var created: [String] = []

    /// Creates every ghost that `files` needs, and points their entries at the created paths.
    func materialize(files: inout [UInt32: Img_FileEntry], images: ImageDirectory) throws {
        guard images.exists(.remapFpath) else { return }
        var madeFor: [UInt32: String] = [:]
        for (at, m) in try images.readWithOffsets(.remapFpath, as: Img_RemapFilePathEntry.self) {
            guard m.remapType == .ghost else {
                throw ImageError.inconsistent(file: images.filePath(.remapFpath), offset: at, reason: "remap type \(m.remapType) is not supported (only ghost files)")
            }
            guard var f = files[m.origID], f.hasReg else {
                throw ImageError.inconsistent(file: images.filePath(.remapFpath), offset: at, reason: "file id \(m.origID) is not a regular file of files.img")
            }
            let path: String
            if let p = madeFor[m.remapID] {
                path = p
            } else {
                path = try make(ghost: m.remapID, at: f.reg.name, images: images)
                madeFor[m.remapID] = path
            }
            f.reg.name = path
            files[m.origID] = f
        }
    }

    private func make(ghost id: UInt32, at original: String, images: ImageDirectory) throws -> String {
        let (g, dataOffset) = try images.readGhost(id: id)
        var path = original
        var fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 && errno == EEXIST {
            path = original + ".cryo-ghost-\(id)"
            unlink(path)
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        }
        guard fd >= 0 else { throw RestoreError.fileMissing(path: path, errno: errno) }
        created.append(path)
        defer { close(fd) }
        try images.copyGhost(id: id, dataOffset: dataOffset, size: g.size, to: fd, target: path)
        // Owner before mode: chown clears set-id bits.
        fchown(fd, g.uid, g.gid)
        fchmod(fd, g.mode & 0o7777)
        var times = [timespec(tv_sec: Int(g.atim.tvSec), tv_nsec: Int(g.atim.tvUsec) * 1000),
                     timespec(tv_sec: Int(g.mtim.tvSec), tv_nsec: Int(g.mtim.tvUsec) * 1000)]
        futimens(fd, &times)
        return path
    }

    /// Unlinks the ghosts: once the tasks hold them, or after a failed restore.
    func removeAll() {
        for p in created { unlink(p) }
        created = []
    }
}
