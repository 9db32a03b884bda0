import CKernel
import Glibc

/// memfd: name, size, contents and seals of the inode (memfd.img, one entry per inode), and
/// per description its flags and offset. Contents are a shmem pagemap
/// (pagemap-shmem-SHMID.img) over pages-ID.img, holes left out, as CRIU stores them.
/// Restore makes the memfd in cryo, fills it, seals it last (a write seal would stop the
/// filling), and opens each description through /proc/self/fd so it has its own flags and
/// offset.
enum MemFd: FdKind {
    static let name = "memfd"
    static let type = Img_FdTypes.memfd
    static let prefix = "/memfd:"
    static let deletedSuffix = " (deleted)"
    /// Pages files of memfds get ids above any pid (pid_max is at most 2^22), so they cannot
    /// collide with the tasks' pages files.
    static let pagesIDBase: UInt32 = 0x4000_0000
    static let getSeals: Int32 = 1034, addSeals: Int32 = 1033
    static let sealSeal: UInt32 = 1

    /// An fd of shared anonymous memory (opened through /proc/PID/map_files) is a shmem inode
    /// too, named so; CRIU stores it as a memfd, and so does cryo, under this name. It comes
    /// back as the same kind of object (and the very object a mapping of the tree shares).
    static let sharedAnonName = "/dev/zero (deleted)"

    /// The device of the kernel's internal shmem mount, where memfds and shared anonymous
    /// memory live (CRIU's kdat.shmem_dev).
    static let shmemDev: UInt64? = {
        guard let fd = try? "cryo-shmem-dev".withCString({ Int32(try Sys.call(.memfdCreate, Int(bitPattern: $0), 0x1 /* MFD_CLOEXEC */, context: "shmem device")) }) else { return nil }
        defer { close(fd) }
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_dev) : nil
    }()

    static func claims(_ f: OpenFd) -> Bool {
        guard f.stat.st_mode & S_IFMT == S_IFREG else { return false }
        return f.target.hasPrefix(prefix) || (f.target == sharedAnonName && UInt64(f.stat.st_dev) == shmemDev)
    }

    /// The memfd.img entry of the inode behind cryo's fd `c` (once per inode); its shmid.
    static func inode(_ c: Int32, target: String, stat st: stat, ctx: FileDumpContext, refuse: (String) -> Error) throws -> UInt32 {
        let ino = UInt64(st.st_ino)
        if let known = ctx.memfdByInode[ino] { return known }
        let shmid = UInt32(ctx.memfdInodes.count + 1)
        var name = target == sharedAnonName ? target : String(target.dropFirst(prefix.count))
        if name.hasSuffix(deletedSuffix) && target != sharedAnonName { name = String(name.dropLast(deletedSuffix.count)) }
        // The one memfd name the restore would take for shared anonymous memory.
        guard name != sharedAnonName || target == sharedAnonName else {
            throw refuse("a memfd named \"\(sharedAnonName)\" would come back as shared anonymous memory")
        }
        let seals = ck_fcntl_int(c, getSeals, 0)
        guard seals >= 0 else { throw refuse("F_GET_SEALS: \(String(cString: strerror(errno)))") }
        let size = Int(st.st_size)
        var data = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let r = data.withUnsafeMutableBytes { pread(c, $0.baseAddress! + got, size - got, off_t(got)) }
            guard r > 0 else { throw refuse("read contents at \(got): \(r < 0 ? String(cString: strerror(errno)) : "short file")") }
            got += r
        }
        var m = Img_MemfdInodeEntry()
        m.name = name
        m.uid = st.st_uid
        m.gid = st.st_gid
        m.mode = st.st_mode & 0o7777
        m.size = UInt64(size)
        m.shmid = shmid
        m.seals = UInt32(bitPattern: seals)
        m.inodeID = ino
        ctx.memfdInodes.append(m)
        ctx.memfdContents[shmid] = data
        ctx.memfdByInode[ino] = shmid
        return shmid
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        let shmid = try inode(ctx.copy(of: f), target: f.target, stat: f.stat, ctx: ctx) { reason in
            DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: reason)
        }
        var e = Img_MemfdFileEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.pos = UInt64(max(0, f.info.pos))
        e.fown = FdKinds.noOwner
        e.inodeID = shmid
        entry.memfd = e
    }

    static func writeContents(_ data: [UInt8], shmid: UInt32, images: ImageDirectory) throws {
        let page = imagePageSize
        var head = Img_PagemapHead()
        head.pagesID = pagesIDBase + shmid
        var map = ImageCodec.header(.shmemPagemap)
        try ImageCodec.appendEntry(&map, head)
        var pages: [UInt8] = []
        var off = 0
        var run: (start: Int, count: UInt32)?
        func flush() throws {
            if let r = run { try ImageCodec.appendEntry(&map, Img_PagemapEntry(vaddr: UInt64(r.start), nrPages: r.count, flags: [.present])) }
            run = nil
        }
        while off < data.count {
            let end = min(off + page, data.count)
            if data[off..<end].contains(where: { $0 != 0 }) {
                pages += data[off..<end]
                if end - off < page { pages += [UInt8](repeating: 0, count: page - (end - off)) }
                if let r = run, r.start + Int(r.count) * page == off { run!.count += 1 } else { try flush(); run = (off, 1) }
            } else {
                try flush()
            }
            off += page
        }
        try flush()
        try images.writeBytes(images.filePath(.shmemPagemap, Int(shmid)), map)
        try images.writeBytes(images.filePath(.pages, Int(head.pagesID)), pages)
    }

    static func readContents(_ m: Img_MemfdInodeEntry, images: ImageDirectory) throws -> [(offset: UInt64, bytes: [UInt8])] {
        let file = images.filePath(.shmemPagemap, Int(m.shmid))
        var r = try images.reader(.shmemPagemap, Int(m.shmid))
        let head = try r.next(Img_PagemapHead.self)
        let pages = try images.readBytes(images.filePath(.pages, Int(head.pagesID)))
        var out: [(UInt64, [UInt8])] = []
        var at = 0
        while !r.atEnd {
            let off = r.offset
            let e = try r.next(Img_PagemapEntry.self)
            let len = Int(e.nrPages) * imagePageSize
            guard e.vaddr % UInt64(imagePageSize) == 0, e.vaddr + UInt64(len) <= (m.size + UInt64(imagePageSize) - 1) / UInt64(imagePageSize) * UInt64(imagePageSize),
                  at + len <= pages.count else {
                throw ImageError.inconsistent(file: file, offset: off, reason: "pages 0x\(String(e.vaddr, radix: 16)) x \(e.nrPages) outside the memfd's \(m.size) bytes or its pages file")
            }
            let keep = Int(min(UInt64(len), m.size - e.vaddr))
            out.append((e.vaddr, Array(pages[at..<(at + keep)])))
            at += len
        }
        return out
    }

    /// cryo's fd of memfd inode `inodeID`, made and filled the first time (for an fd or a
    /// mapping of it), then reopened or mapped by every user.
    static func object(_ inodeID: UInt32, objects: RestoredObjects, what: String) throws -> Int32 {
        if let made = objects.memfds[inodeID] { return made }
        let inodes = try objects.images.read(.memfdInode, as: Img_MemfdInodeEntry.self)
        guard let m = inodes.first(where: { $0.shmid == inodeID }) else {
            throw ImageError.inconsistent(file: objects.images.filePath(.memfdInode, nil), offset: 0, reason: "memfd inode \(inodeID) (\(what)) is not there")
        }
        let anon = m.name == sharedAnonName
        let fd: Int32
        if anon, let made = objects.sharedMemory?.fds[m.inodeID] {
            // A mapping of the tree shares it: the very object, filled from its pages already.
            fd = dup(made)
            guard fd >= 0 else { throw SystemCallError(call: "dup", errno: errno, context: what) }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        } else if anon {
            fd = try SharedMemoryObjects.make(size: m.size, what: what)
        } else {
            // Always sealable: a memfd made without MFD_ALLOW_SEALING has F_SEAL_SEAL, which
            // goes back with the other seals.
            fd = try m.name.withCString { Int32(try Sys.call(.memfdCreate, Int(bitPattern: $0), 0x1 | 0x2 /* CLOEXEC|ALLOW_SEALING */, context: what)) }
            objects.memfdsToGive.insert(inodeID)
        }
        objects.memfds[inodeID] = fd
        guard ftruncate(fd, off_t(m.size)) == 0 else { throw SystemCallError(call: "ftruncate(\(m.size))", errno: errno, context: what) }
        for (off, bytes) in try readContents(m, images: objects.images) {
            var done = 0
            while done < bytes.count {
                let r = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(off) + off_t(done)) }
                guard r > 0 else { throw SystemCallError(call: "pwrite", errno: errno, context: what) }
                done += r
            }
        }
        // Owner and mode before the seals (F_SEAL_WRITE does not stop them, but keep CRIU's order).
        if fchown(fd, m.uid, m.gid) != 0 { throw SystemCallError(call: "fchown(\(m.uid), \(m.gid))", errno: errno, context: what) }
        if m.hasMode && fchmod(fd, mode_t(m.mode)) != 0 { throw SystemCallError(call: "fchmod(0\(String(m.mode, radix: 8)))", errno: errno, context: what) }
        // Shared anonymous memory is born with F_SEAL_SEAL, its only seal.
        if !anon && m.seals != 0 && ck_fcntl_int(fd, addSeals, Int32(bitPattern: m.seals)) < 0 {
            throw SystemCallError(call: "fcntl(F_ADD_SEALS 0x\(String(m.seals, radix: 16)))", errno: errno, context: what)
        }
        return fd
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.memfd
        let what = "memfd id \(entry.id)"
        let object = try self.object(e.inodeID, objects: ctx.shared, what: what)
        let flags = Int32(bitPattern: e.flags) & ~(O_CREAT | O_TRUNC | O_EXCL)
        let fd: Int32
        if flags & O_ACCMODE == O_RDWR && ctx.shared.memfdsToGive.remove(e.inodeID) != nil {
            // memfd_create's own description does not count as a writer (a reopen does), so
            // the file can be exec'ed through it (execveat AT_EMPTY_PATH): one read-write
            // description gets the object itself.
            fd = fcntl(object, F_DUPFD_CLOEXEC, 0)
            guard fd >= 0 else { throw SystemCallError(call: "fcntl(F_DUPFD_CLOEXEC)", errno: errno, context: what) }
            try FileFlags.set(fd, UInt32(bitPattern: flags), what: what)
        } else {
            fd = open("/proc/self/fd/\(object)", flags | O_CLOEXEC)
            guard fd >= 0 else { throw SystemCallError(call: "open(/proc/self/fd)", errno: errno, context: what) }
        }
        if e.pos != 0 { lseek(fd, off_t(e.pos), SEEK_SET) }
        return try ctx.install(fd, id: entry.id, what: what)
    }
}
