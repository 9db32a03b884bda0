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
                path = try make(ghost: m.remapID, at: f.reg.name, flags: Int32(bitPattern: f.reg.flags), images: images)
                madeFor[m.remapID] = path
            }
            f.reg.name = path
            files[m.origID] = f
        }
    }

    /// O_TMPFILE files (never linked, named DIR/#INODE): made again as such when the first
    /// task that holds one has its fds restored, through that task's root, so the file is on
    /// the tree's own mount (linkat(AT_EMPTY_PATH) then works in a mount namespace too).
    /// By the name the entries keep: the ghost id, then cryo's fd of the made file.
    private(set) var tmpfileGhosts: [String: UInt32] = [:]
    var tmpfiles: [String: Int32] = [:]
    private var images: ImageDirectory?

    static func isTmpfile(_ name: String, flags: Int32) -> Bool {
        guard flags & tmpfileBit != 0, let slash = name.lastIndex(of: "/") else { return false }
        return name[name.index(after: slash)...].hasPrefix("#")
    }

    /// The O_TMPFILE file `name` (a ghost), made in its folder under `root` (/proc/PID/root).
    func makeTmpfile(_ name: String, root: String, flags: Int32) throws -> Int32 {
        if let fd = tmpfiles[name] { return fd }
        guard let id = tmpfileGhosts[name], let images else { throw RestoreError.fileMissing(path: name, errno: ENOENT) }
        let (g, dataOffset) = try images.readGhost(id: id)
        let slash = name.lastIndex(of: "/")!
        let dir = root + (slash == name.startIndex ? "/" : String(name[..<slash]))
        // O_TMPFILE wants write access: the file was made with it too.
        let fd = open(dir, (flags & (O_ACCMODE | 0o100000 /* O_LARGEFILE */)) | GhostFiles.tmpfileBit | O_DIRECTORY | O_CLOEXEC, mode_t(g.mode & 0o7777))
        guard fd >= 0 else { throw RestoreError.fileMissing(path: dir + " (O_TMPFILE)", errno: errno) }
        tmpfiles[name] = fd
        try images.copyGhost(id: id, dataOffset: dataOffset, size: g.size, to: fd, target: name)
        GhostFiles.settle(fd, g)
        return fd
    }

    /// Owner, mode and times of a made ghost. Owner before mode: chown clears set-id bits.
    private static func settle(_ fd: Int32, _ g: Img_GhostFileEntry) {
        fchown(fd, g.uid, g.gid)
        fchmod(fd, g.mode & 0o7777)
        var times = [timespec(tv_sec: Int(g.atim.tvSec), tv_nsec: Int(g.atim.tvUsec) * 1000),
                     timespec(tv_sec: Int(g.mtim.tvSec), tv_nsec: Int(g.mtim.tvUsec) * 1000)]
        futimens(fd, &times)
    }

    private func make(ghost id: UInt32, at original: String, flags: Int32, images: ImageDirectory) throws -> String {
        if GhostFiles.isTmpfile(original, flags: flags) {
            self.images = images
            tmpfileGhosts[original] = id
            return original
        }
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
        GhostFiles.settle(fd, g)
        return path
    }

    /// Unlinks the ghosts: once the tasks hold them, or after a failed restore.
    func removeAll() {
        for p in created { unlink(p) }
        created = []
        for fd in tmpfiles.values { close(fd) }
        tmpfiles = [:]
    }

    /// __O_TMPFILE (O_TMPFILE without O_DIRECTORY), as fdinfo flags show it.
    static let tmpfileBit: Int32 = 0o20000000
}
