import Foundation
import Glibc

/// The files.img of one dump: every open file, mapped file, cwd and root gets an id here;
/// fdinfo images point at these ids.
final class FileTable: @unchecked Sendable {
    private(set) var entries: [Img_FileEntry] = []
    private var byPath: [String: UInt32] = [:]
    private var nextID: UInt32 = 1

    /// A file known by path (mapped file, cwd, root, exe): one id per path.
    func register(path: String, pid: Int32, flags: Int32, mapping: ProcMapping? = nil) throws -> UInt32 {
        if let id = byPath[path] { return id }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw DumpError.unsupported(pid: pid, what: "file \(path) (\(String(cString: strerror(errno))))")
        }
        let id = nextID; nextID += 1
        var e = Img_FileEntry()
        e.type = .reg
        e.id = id
        e.reg = RegularFile.entryFor(path: path, id: id, flags: UInt32(bitPattern: flags), pos: 0,
                                     size: st.st_mode & S_IFMT == S_IFREG ? UInt64(st.st_size) : nil, mode: st.st_mode)
        entries.append(e)
        byPath[path] = id
        return id
    }

    /// Dumps every fd of `pid` into fdinfo-PID.img. An fd no kind claims fails the dump,
    /// naming the fd, its kind and its target.
    func dumpFds(pid: Int32, proc: ProcReader, images: ImageDirectory) throws {
        var infos: [Img_FdinfoEntry] = []
        for fd in try proc.fds(pid: pid) {
            let target = try proc.fdTarget(pid: pid, fd: fd)
            let info = try proc.fdinfo(pid: pid, fd: fd)
            var st = stat()
            if stat("/proc/\(pid)/fd/\(fd)", &st) != 0 { st = Glibc.stat() }
            let f = OpenFd(pid: pid, fd: fd, target: target, info: info, stat: st)
            guard let kind = FdKinds.all.first(where: { $0.claims(f) }) else {
                throw DumpError.unsupportedFd(pid: pid, fd: fd, kind: FdKinds.describe(f), target: target)
            }
            let id = nextID; nextID += 1
            var e = Img_FileEntry()
            e.type = kind.type
            e.id = id
            try kind.dump(f, id: id, into: &e)
            entries.append(e)
            var fi = Img_FdinfoEntry()
            fi.id = id
            fi.flags = info.flags & O_CLOEXEC != 0 ? UInt32(O_CLOEXEC) : 0
            fi.type = kind.type
            fi.fd = UInt32(fd)
            infos.append(fi)
        }
        try images.write(.fdinfo, id: Int(pid), entries: infos)
    }

    func write(to images: ImageDirectory) throws { try images.write(.files, entries: entries) }
}
