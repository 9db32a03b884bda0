import CKernel
import Foundation
import Glibc

/// Unix98 ptys, both ends (docs/TTY.md). Each end's state goes to tty-info.img (CRIU's
/// TtyInfoEntry: index, termios, window size, lock, packet mode, exclusive, the session whose
/// controlling terminal it is and its foreground group); each open description is a
/// TtyFileEntry in files.img. Restore opens ptmx until it gives the same index.
///
/// Data in flight both ways goes to tty-data.img (TtyData.swift); a slave hung up by its
/// master's close comes back hung up (TtyHangup.swift). A shell job's slave whose master is
/// outside the tree stays a path, reopened as the caller's terminal.
enum Tty: FdKind {
    static let name = "pty"
    static let type = Img_FdTypes.tty

    static func claims(_ f: OpenFd) -> Bool {
        let t = FdChecks.terminal(f.stat)
        return t == .ptyMaster || t == .ptySlave || isCttyAlias(f.stat)
    }

    /// /dev/tty (5:0): whatever the opener's controlling terminal was.
    static func isCttyAlias(_ st: stat) -> Bool {
        st.st_mode & S_IFMT == S_IFCHR && FdChecks.major(UInt64(st.st_rdev)) == 5 && FdChecks.minor(UInt64(st.st_rdev)) == 0
    }

    /// /dev/tty opened on a pty of the tree that is still the holder's controlling terminal:
    /// restore opens /dev/tty in the task once that terminal is its session's again (stage 4).
    static func dumpCttyAlias(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let c = try ctx.copy(of: f)
        var dev: UInt32 = 0
        guard ck_ioctl(c, TtyIoctl.getDev, &dev) == 0 else { throw refuse("TIOCGDEV: \(String(cString: strerror(errno)))") }
        var st = stat()
        st.st_mode = S_IFCHR
        st.st_rdev = UInt(dev)
        let holders = try ctx.ttys.holders(proc: ctx.proc)
        let index = FdChecks.terminal(st) == .ptySlave ? TtyDumpState.index(ofSlave: st) : nil
        let ours = index.map { i in holders.masters.contains { $0.key.index == i && !$0.value.isDisjoint(with: ctx.treePids) } } ?? false
        if !ours {
            if ctx.shellJob {
                entry.type = .reg
                entry.reg = RegularFile.entryFor(path: f.target, id: id, flags: UInt32(bitPattern: f.info.flags), pos: 0, size: nil, mode: f.stat.st_mode)
                return
            }
            throw refuse("/dev/tty on a terminal (\(FdChecks.major(UInt64(dev))):\(FdChecks.minor(UInt64(dev)))) that is not a pty of the tree; dump with --shell-job if it is the shell's")
        }
        guard let nr = try? ctx.proc.stat(pid: f.pid).ttyNr, UInt32(bitPattern: nr) == dev else {
            throw refuse("/dev/tty opened on /dev/pts/\(index!), which is no longer its controlling terminal")
        }
        let info = bareInfo(.ctty, index: index!, of: f, ctx: ctx)
        ctx.ttys.infos.append(info)
        var reg = Img_FileEntry()
        reg.type = .reg
        reg.id = ctx.extraID()
        reg.reg = RegularFile.entryFor(path: "/dev/tty", id: reg.id, flags: UInt32(O_RDWR), pos: 0, size: nil, mode: f.stat.st_mode)
        ctx.extraEntries.append(reg)
        var e = Img_TtyFileEntry()
        e.id = id
        e.ttyInfoID = info.id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        e.regfID = reg.id
        entry.tty = e
    }

    /// An end whose state is only its kind, index and device (no termios, no session).
    static func bareInfo(_ type: Img_TtyType, index: UInt32, of f: OpenFd, ctx: FileDumpContext) -> Img_TtyInfoEntry {
        var info = Img_TtyInfoEntry()
        info.id = ctx.ttys.nextInfoID()
        info.type = type
        info.locked = false; info.exclusive = false; info.packetMode = false
        info.sid = 0; info.pgrp = 0
        info.rdev = TtyDumpState.encode(UInt64(f.stat.st_rdev))
        var pty = Img_TtyPtyEntry()
        pty.index = index
        info.pty = pty
        return info
    }

    /// /dev/tty needs its task's controlling terminal, set once every task has its groups.
    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int {
        entry.hasTty && entry.tty.hasRegfID && files[entry.tty.regfID]?.reg.name == "/dev/tty" ? PidFd.deferredStage : 0
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        if isCttyAlias(f.stat) { return try dumpCttyAlias(f, id: id, into: &entry, ctx: ctx) }
        let master = FdChecks.terminal(f.stat) == .ptyMaster
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let holders = try ctx.ttys.holders(proc: ctx.proc)
        let c = try ctx.copy(of: f)
        let key: PtyKey
        if master {
            var n: UInt32 = 0
            guard ck_ioctl(c, TtyIoctl.getPtn, &n) == 0 else { throw refuse("TIOCGPTN: \(String(cString: strerror(errno)))") }
            key = PtyKey(devpts: TtyDumpState.devpts(ofMaster: f.target, pid: f.pid), index: n)
        } else {
            key = PtyKey(devpts: UInt64(f.stat.st_dev), index: TtyDumpState.index(ofSlave: f.stat))
        }
        let slavePath = "/dev/pts/\(key.index)"
        let outsideMasters = holders.masters[key, default: []].subtracting(ctx.treePids)
        let outsideSlaves = holders.slaves[key, default: []].subtracting(ctx.treePids)
        let masterInTree = !holders.masters[key, default: []].intersection(ctx.treePids).isEmpty
        // A hung-up slave's index was freed with its master: a live pty may have it now.
        if !master && TtyHangup.isHungUp(c) {
            return try TtyHangup.dump(f, id: id, index: key.index, into: &entry, ctx: ctx)
        }
        if !master && !masterInTree {
            // The shell's terminal: restore --shell-job opens the caller's in its place.
            if ctx.shellJob {
                entry.type = .reg
                entry.reg = RegularFile.entryFor(path: f.target, id: id, flags: UInt32(bitPattern: f.info.flags), pos: 0, size: nil, mode: f.stat.st_mode)
                return
            }
            throw refuse(outsideMasters.isEmpty
                ? "pty slave \(slavePath) whose master is open nowhere, which cryo cannot restore"
                : "pty slave \(slavePath) whose master is held outside the tree (pid \(outsideMasters.sorted().map(String.init).joined(separator: ", "))); dump with --shell-job if it is the shell's terminal")
        }
        if !outsideMasters.isEmpty {
            throw refuse("the master of \(slavePath) is also held outside the tree (pid \(outsideMasters.sorted().map(String.init).joined(separator: ", ")))")
        }
        if !outsideSlaves.isEmpty {
            throw refuse("\(slavePath) is also held outside the tree (pid \(outsideSlaves.sorted().map(String.init).joined(separator: ", ")))")
        }
        var info = try readInfo(c, master: master, slavePath: slavePath, refuse: refuse)
        info.id = ctx.ttys.nextInfoID()
        // The slave's inode: its owner and mode (grantpt's, or a chown's) come back too.
        var node = f.stat
        if master && stat("/proc/\(f.pid)/root" + TtyDumpState.devptsDir(ofMaster: f.target) + "/\(key.index)", &node) != 0 {
            throw refuse("\(slavePath): \(String(cString: strerror(errno)))")
        }
        info.uid = node.st_uid
        info.gid = node.st_gid
        info.mode = node.st_mode & 0o7777
        info.rdev = TtyDumpState.encode(UInt64(f.stat.st_rdev))
        var pty = Img_TtyPtyEntry()
        pty.index = key.index
        info.pty = pty
        var e = Img_TtyFileEntry()
        e.id = id
        e.ttyInfoID = info.id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        if master {
            let slaveOpen = !holders.slaves[key, default: []].isEmpty
            // A slave opened and closed again makes the master read EIO and poll HUP; one never
            // opened cannot be looked into without changing that.
            if !slaveOpen && !info.slaveClosed {
                throw refuse("pty \(slavePath) whose slave was never opened: cryo cannot see data queued to it without opening it")
            }
            let (sid, pgrp) = try session(c, refuse: refuse)
            if sid != 0 {
                guard ctx.treePids.contains(sid) else { throw refuse("\(slavePath) is the controlling terminal of session \(sid), which is outside the tree") }
                info.sid = UInt32(bitPattern: ctx.pids.image(sid))
            }
            if pgrp != 0 {
                guard ctx.treePids.contains(pgrp) else { throw refuse("the foreground process group of \(slavePath) is \(pgrp), whose leader is outside the tree") }
                info.pgrp = UInt32(bitPattern: ctx.pids.image(pgrp))
            }
            // The path it was opened by names the devpts to open ptmx in again.
            var reg = Img_FileEntry()
            reg.type = .reg
            reg.id = ctx.extraID()
            reg.reg = RegularFile.entryFor(path: f.target, id: reg.id, flags: UInt32(O_RDWR), pos: 0, size: nil, mode: f.stat.st_mode)
            ctx.extraEntries.append(reg)
            e.regfID = reg.id
        }
        ctx.ttys.infos.append(info)
        ctx.ttys.dumped[key, default: []].append((master, info, f.pid))
        ctx.ttys.track(key, master: master, id: id, copy: c, info: info, pid: f.pid, fd: f.fd,
                       slaveHostPath: "/proc/\(f.pid)/root" + TtyDumpState.devptsDir(ofMaster: f.target) + "/\(key.index)")
        entry.tty = e
    }

    /// The state of one end through cryo's copy; refuses data in flight and line disciplines
    /// other than N_TTY.
    static func readInfo(_ c: Int32, master: Bool, slavePath: String, refuse: (String) -> DumpError) throws -> Img_TtyInfoEntry {
        func get(_ req: UInt, _ what: String) throws -> Int32 {
            var v: Int32 = 0
            guard ck_ioctl(c, req, &v) == 0 else { throw refuse("\(what): \(String(cString: strerror(errno)))") }
            return v
        }
        var info = Img_TtyInfoEntry()
        info.type = .pty
        info.locked = false
        info.packetMode = false
        // poll first: it pushes what the other end wrote through to this end's line discipline.
        // Data in flight is read at the end of the dump (TtyDumpState.drain).
        var p = pollfd(fd: c, events: Int16(POLLIN | POLLPRI), revents: 0)
        _ = poll(&p, 1, 0)
        info.slaveClosed = master && p.revents & Int16(POLLHUP) != 0
        let ldisc = try get(TtyIoctl.getd, "TIOCGETD")
        if ldisc != 0 { throw refuse("pty \(slavePath) with line discipline \(ldisc), not N_TTY") }
        info.exclusive = try get(TtyIoctl.getExcl, "TIOCGEXCL") != 0
        if master {
            info.locked = try get(TtyIoctl.getPtlck, "TIOCGPTLCK") != 0
            info.packetMode = try get(TtyIoctl.getPkt, "TIOCGPKT") != 0
        }
        var t = [UInt8](repeating: 0, count: 64)
        guard ck_ioctl(c, TtyIoctl.getTermios2, &t) == 0 else { throw refuse("TCGETS2: \(String(cString: strerror(errno)))") }
        info.termios = termiosEntry(t, speeds: true)
        var l = [UInt8](repeating: 0, count: 64)
        guard ck_ioctl(c, TtyIoctl.getLockedTermios, &l) == 0 else { throw refuse("TIOCGLCKTRMIOS: \(String(cString: strerror(errno)))") }
        if l.prefix(36).contains(where: { $0 != 0 }) { info.termiosLocked = termiosEntry(l, speeds: false) }
        var w = [UInt16](repeating: 0, count: 4)
        guard ck_ioctl(c, TtyIoctl.getWinsize, &w) == 0 else { throw refuse("TIOCGWINSZ: \(String(cString: strerror(errno)))") }
        var ws = Img_WinsizeEntry()
        ws.wsRow = UInt32(w[0]); ws.wsCol = UInt32(w[1]); ws.wsXpixel = UInt32(w[2]); ws.wsYpixel = UInt32(w[3])
        info.winsize = ws
        info.sid = 0
        info.pgrp = 0
        return info
    }

    /// The session whose controlling terminal the pty is and its foreground group (host
    /// pids, 0 for none); asked of the master, which answers without being one's terminal.
    static func session(_ master: Int32, refuse: (String) -> DumpError) throws -> (Int32, Int32) {
        var sid: Int32 = 0, pgrp: Int32 = 0
        if ck_ioctl(master, TtyIoctl.getSid, &sid) != 0 {
            guard errno == ENOTTY else { throw refuse("TIOCGSID: \(String(cString: strerror(errno)))") }
            return (0, 0)
        }
        guard ck_ioctl(master, TtyIoctl.getPgrp, &pgrp) == 0 else { throw refuse("TIOCGPGRP: \(String(cString: strerror(errno)))") }
        return (sid, pgrp)
    }

    /// struct termios2 (x86_64): four flag words, c_line, c_cc[19], then the two speeds.
    static func termiosEntry(_ b: [UInt8], speeds: Bool) -> Img_TermiosEntry {
        var e = Img_TermiosEntry()
        e.cIflag = b.u32(at: 0); e.cOflag = b.u32(at: 4); e.cCflag = b.u32(at: 8); e.cLflag = b.u32(at: 12)
        e.cLine = UInt32(b[16])
        e.cCc = (0..<19).map { UInt32(b[17 + $0]) }
        e.cIspeed = speeds ? b.u32(at: 36) : 0
        e.cOspeed = speeds ? b.u32(at: 40) : 0
        return e
    }

    static func termiosBytes(_ e: Img_TermiosEntry) -> [UInt8] {
        var b: [UInt8] = []
        for v in [e.cIflag, e.cOflag, e.cCflag, e.cLflag] { b.putU32(v) }
        b.append(UInt8(truncatingIfNeeded: e.cLine))
        for i in 0..<19 { b.append(i < e.cCc.count ? UInt8(truncatingIfNeeded: e.cCc[i]) : 0) }
        while b.count < 36 { b.append(0) }
        b.putU32(e.cIspeed); b.putU32(e.cOspeed)
        return b
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let t = entry.tty
        func fail(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: entry.id, what: name, reason: r) }
        let infos = try ctx.shared.ptys.infos(ctx.images)
        guard let info = infos[t.ttyInfoID], info.type == .pty || info.type == .ctty, info.hasPty else {
            throw fail("tty info \(t.ttyInfoID) is not a pty's in tty-info.img")
        }
        if info.type == .ctty { return try openCttyAlias(entry, ctx: ctx) }
        if info.hungUp { return try TtyHangup.restore(entry, info: info, ctx: ctx) }
        let pty = try ctx.shared.ptys.pty(index: info.pty.index, ctx: ctx)
        if TtyDumpState.isMaster(rdev: info.rdev) {
            return try ctx.install(pty.master, id: entry.id, what: "pty master of \(pty.slavePath)")
        }
        let fd = open(pty.slavePath, Int32(bitPattern: t.flags) & O_ACCMODE | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open \(pty.slavePath): \(String(cString: strerror(errno)))") }
        do { try FileFlags.set(fd, t.flags, what: pty.slavePath) } catch { close(fd); throw error }
        return try ctx.install(fd, id: entry.id, what: pty.slavePath)
    }
}

extension Tty {
    /// /dev/tty, opened by the task itself (it names the opener's controlling terminal), then
    /// taken into cryo so that other tasks holding this description get the same one.
    static func openCttyAlias(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let t = ctx.task
        let flags = Int32(bitPattern: entry.tty.flags) & O_ACCMODE | O_NOCTTY
        let got: Int32
        do {
            got = Int32(truncatingIfNeeded: try t.remote.syscall(.open, try t.put(string: "/dev/tty"), UInt64(flags)))
        } catch {
            throw RestoreError.file(pid: t.pid, id: entry.id, what: "/dev/tty", reason: "open in the task: \(error)")
        }
        let pidfd = try Sys.pidfdOpen(t.pid)
        defer { close(pidfd) }
        let mine = try Sys.pidfdGetfd(pidfd: pidfd, fd: got, context: "pid \(t.pid) fd \(got) (/dev/tty)")
        ctx.objects[entry.id] = mine
        try FileFlags.set(mine, entry.tty.flags, what: "/dev/tty")
        return got
    }
}

/// x86_64 tty ioctls.
enum TtyIoctl {
    static let getTermios2: UInt = 0x802c_542a, setTermios2: UInt = 0x402c_542b
    static let getLockedTermios: UInt = 0x5456, setLockedTermios: UInt = 0x5457
    static let getWinsize: UInt = 0x5413, setWinsize: UInt = 0x5414
    static let getPtn: UInt = 0x8004_5430, setPtlck: UInt = 0x4004_5431, getPtlck: UInt = 0x8004_5439
    static let getPkt: UInt = 0x8004_5438, setPkt: UInt = 0x5420
    static let getExcl: UInt = 0x8004_5440, setExcl: UInt = 0x540c
    static let getSid: UInt = 0x5429, getPgrp: UInt = 0x540f, setPgrp: UInt = 0x5410
    static let setCtty: UInt = 0x540e, getd: UInt = 0x5424, fionread: UInt = 0x541b, getDev: UInt = 0x8004_5432
}

/// A pty: the devpts it lives in (its superblock's device) and its index there.
struct PtyKey: Hashable {
    let devpts: UInt64
    let index: UInt32
}

/// What one dump knows of ptys: who holds each end, host-wide (found once), and the ends
/// dumped so far.
final class TtyDumpState {
    struct Holders {
        var masters: [PtyKey: Set<Int32>] = [:]
        var slaves: [PtyKey: Set<Int32>] = [:]
    }
    private var found: Holders?
    /// Each pty's queues (TtyData.swift).
    var drains: [PtyKey: PtyDrain] = [:]
    var infos: [Img_TtyInfoEntry] = []
    var dumped: [PtyKey: [(master: Bool, info: Img_TtyInfoEntry, pid: Int32)]] = [:]
    private var lastID: UInt32 = 0

    func nextInfoID() -> UInt32 { lastID += 1; return lastID }

    /// Every process's pty ends but cryo's, by one scan of /proc (done on the first pty).
    func holders(proc: ProcReader) throws -> Holders {
        if let found { return found }
        var h = Holders()
        let me = getpid()
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        for p in pids where p != me {
            // Processes come and go while we look; the ones we cannot read hold nothing of ours.
            for fd in (try? proc.fds(pid: p)) ?? [] {
                var st = stat()
                guard stat("/proc/\(p)/fd/\(fd)", &st) == 0 else { continue }
                switch FdChecks.terminal(st) {
                case .ptyMaster:
                    guard let t = try? proc.fdTarget(pid: p, fd: fd), let i = (try? proc.fdinfo(pid: p, fd: fd))?.ttyIndex else { continue }
                    h.masters[PtyKey(devpts: TtyDumpState.devpts(ofMaster: t, pid: p), index: i), default: []].insert(p)
                case .ptySlave:
                    // Hung up: /dev/pts/N went with its master, and N may be another pty's now.
                    if (try? proc.fdTarget(pid: p, fd: fd))?.hasSuffix(" (deleted)") == true { continue }
                    h.slaves[PtyKey(devpts: UInt64(st.st_dev), index: TtyDumpState.index(ofSlave: st)), default: []].insert(p)
                default: break
                }
            }
        }
        found = h
        return h
    }

    /// The devpts a ptmx opened at `path` by `pid` belongs to: /dev/ptmx finds the "pts"
    /// beside it, a devpts' own ptmx its own directory.
    static func devpts(ofMaster path: String, pid: Int32) -> UInt64 {
        var st = stat()
        guard stat("/proc/\(pid)/root" + devptsDir(ofMaster: path), &st) == 0 else { return 0 }
        return UInt64(st.st_dev)
    }

    static func devptsDir(ofMaster path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.hasSuffix("/pts") ? dir : (dir == "/" ? "" : dir) + "/pts"
    }

    static func index(ofSlave st: stat) -> UInt32 {
        UInt32((FdChecks.major(UInt64(st.st_rdev)) - 136) * 256 + FdChecks.minor(UInt64(st.st_rdev)))
    }

    /// The kernel's new_encode_dev, as CRIU's rdev.
    static func encode(_ dev: UInt64) -> UInt32 {
        let maj = FdChecks.major(dev), min = FdChecks.minor(dev)
        return UInt32(truncatingIfNeeded: (min & 0xff) | (maj << 8) | ((min & ~0xff) << 12))
    }

    static func isMaster(rdev: UInt32) -> Bool { (rdev >> 8) & 0xfff == 5 && rdev & 0xff == 2 }

    /// Checks what only the whole tree shows, then writes tty-info.img: every process with a
    /// controlling terminal has one of the tree's ptys, as its session's.
    func write(to images: ImageDirectory, ctx: FileDumpContext) throws {
        let sessions = Dictionary(dumped.values.flatMap { $0 }.filter(\.master).map { ($0.info.pty.index, $0.info.sid) }, uniquingKeysWith: { a, _ in a })
        for pid in ctx.treePids.sorted() {
            guard let st = try? ctx.proc.stat(pid: pid), st.ttyNr != 0 else { continue }
            let dev = UInt64(UInt32(bitPattern: st.ttyNr))
            // tty_nr is new_encode_dev's, which glibc's dev_t is too for majors below 4096.
            var s = Glibc.stat()
            s.st_mode = S_IFCHR
            s.st_rdev = UInt(dev)
            let maj = FdChecks.major(dev), min = FdChecks.minor(dev)
            let term = FdChecks.terminal(s)
            if term == .ptySlave, let sid = sessions[UInt32(TtyDumpState.index(ofSlave: s))], sid != 0, sid == UInt32(bitPattern: ctx.pids.image(st.session)) { continue }
            if ctx.shellJob { continue }
            let name = term == .ptySlave ? "/dev/pts/\(TtyDumpState.index(ofSlave: s))" : "tty \(maj):\(min)"
            throw DumpError.unsupported(pid: pid, what: "a controlling terminal (\(name)) that is not a pty of the tree with the session's master in it (dump with --shell-job if it is the shell's)")
        }
        let data = try drain()
        try Fault.check(.afterFiles)  // past the point where the queues need putting back
        if !infos.isEmpty { try images.write(.ttyInfo, entries: infos) }
        if !data.isEmpty { try images.write(.ttyData, entries: data) }
    }
}

/// The ptys one restore made, by index: cryo's master and a slave fd that keeps the pty
/// set up until the tree holds its own (both closed with the restore's other objects).
final class RestoredPtys {
    struct Pty {
        let master: Int32
        let keeper: Int32
        let slavePath: String
        let info: Img_TtyInfoEntry
        var slaveExclusive = false
        /// What was in flight at dump time, queued again once the tree's ends are open.
        let queues: PtyQueues
    }
    private var byID: [UInt32: Img_TtyInfoEntry]?
    private var dataEntries: [Img_TtyDataEntry]?
    /// The hung-up slaves are made (TtyHangup.makeAll).
    var hangupsMade = false
    private(set) var made: [UInt32: Pty] = [:]

    func infos(_ images: ImageDirectory) throws -> [UInt32: Img_TtyInfoEntry] {
        if let byID { return byID }
        let all = images.exists(.ttyInfo) ? try images.read(.ttyInfo, as: Img_TtyInfoEntry.self) : []
        byID = Dictionary(all.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return byID!
    }

    /// The pty with `index`, made now if it is the first of its ends restored: ptmx is
    /// opened (at the path the master was) until it gives that index, then termios, window
    /// size, packet mode and exclusive are set. The lock comes last (finish): the tree's
    /// slaves are opened before.
    func pty(index: UInt32, ctx: FileRestoreContext) throws -> Pty {
        if let p = made[index] { return p }
        try TtyHangup.makeAll(ctx: ctx)
        let infos = try self.infos(ctx.images)
        let ends = ctx.files.values.filter { $0.hasTty }.compactMap { f in infos[f.tty.ttyInfoID].map { (f, $0) } }.filter { $0.1.hasPty && $0.1.pty.index == index }
        guard let (mf, mi) = ends.first(where: { TtyDumpState.isMaster(rdev: $0.1.rdev) }) else {
            throw RestoreError.file(pid: ctx.task.pid, id: 0, what: "pty \(index)", reason: "no master of pty \(index) in the images")
        }
        let ptmx = mf.tty.hasRegfID ? ctx.files[mf.tty.regfID]?.reg.name ?? "/dev/ptmx" : "/dev/ptmx"
        let slavePath = TtyDumpState.devptsDir(ofMaster: ptmx) + "/\(index)"
        func fail(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: mf.id, what: "pty master \(ptmx)", reason: r) }
        let master = try Self.openPtmx(ptmx, index: index, fail: fail)
        ctx.objects[mf.id] = master
        try FileFlags.set(master, mf.tty.flags, what: "pty master \(ptmx) (\(slavePath))")
        func set(_ fd: Int32, _ req: UInt, _ v: Int32, _ what: String) throws {
            var x = v
            guard ck_ioctl(fd, req, &x) == 0 else { throw fail("\(what): \(String(cString: strerror(errno)))") }
        }
        try set(master, TtyIoctl.setPtlck, 0, "TIOCSPTLCK")
        let keeper = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard keeper >= 0 else { throw fail("open \(slavePath): \(String(cString: strerror(errno)))") }
        ctx.keepers.append(keeper)
        if mi.hasUid || mi.hasGid {
            guard fchown(keeper, mi.uid, mi.gid) == 0 else { throw fail("chown \(slavePath) \(mi.uid):\(mi.gid): \(String(cString: strerror(errno)))") }
        }
        if mi.hasMode {
            guard fchmod(keeper, mode_t(mi.mode)) == 0 else { throw fail("chmod \(slavePath) \(String(mi.mode, radix: 8)): \(String(cString: strerror(errno)))") }
        }
        // termios and winsize through the master reach the slave's (the pty's own).
        var tb = Tty.termiosBytes(mi.termios)
        guard ck_ioctl(master, TtyIoctl.setTermios2, &tb) == 0 else { throw fail("TCSETS2: \(String(cString: strerror(errno)))") }
        if mi.hasTermiosLocked {
            var lb = Array(Tty.termiosBytes(mi.termiosLocked).prefix(36))
            guard ck_ioctl(master, TtyIoctl.setLockedTermios, &lb) == 0 else { throw fail("TIOCSLCKTRMIOS: \(String(cString: strerror(errno)))") }
        }
        var w: [UInt16] = [UInt16(mi.winsize.wsRow), UInt16(mi.winsize.wsCol), UInt16(mi.winsize.wsXpixel), UInt16(mi.winsize.wsYpixel)]
        guard ck_ioctl(master, TtyIoctl.setWinsize, &w) == 0 else { throw fail("TIOCSWINSZ: \(String(cString: strerror(errno)))") }
        if mi.packetMode { try set(master, TtyIoctl.setPkt, 1, "TIOCPKT") }
        // Exclusive mode is set last (restoreTerminals): in a user namespace of the tree's, its
        // tasks' own opens (/dev/tty) would need CAP_SYS_ADMIN of the host's.
        let slaveExclusive = ends.contains(where: { !TtyDumpState.isMaster(rdev: $0.1.rdev) && $0.1.exclusive })
        var q = PtyQueues()
        let ids = Set(ends.map { $0.0.id })
        for e in try data(ctx.images) where ids.contains(e.ttyID) { try q.add(e) }
        if mi.hasPktStatus { q.status = UInt8(truncatingIfNeeded: mi.pktStatus) }
        let p = Pty(master: master, keeper: keeper, slavePath: slavePath, info: mi, slaveExclusive: slaveExclusive, queues: q)
        made[index] = p
        return p
    }

    /// ptmx opened until it gives `index`; the lower indexes it hands out on the way are
    /// closed again.
    static func openPtmx(_ ptmx: String, index: UInt32, fail: (String) -> RestoreError) throws -> Int32 {
        let slavePath = TtyDumpState.devptsDir(ofMaster: ptmx) + "/\(index)"
        // A pty of the dumped tree may still be going away (its holders just died).
        var st = stat()
        let deadline = Date().addingTimeInterval(2)
        while stat(slavePath, &st) == 0 {
            if Date() > deadline { throw fail("\(slavePath) is taken by another pty; the tree's pty \(index) cannot be made again") }
            usleep(10_000)
        }
        var spare: [Int32] = []
        defer { for fd in spare { close(fd) } }
        for _ in 0...Int(index) + 64 {
            let fd = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { throw fail("open \(ptmx): \(String(cString: strerror(errno)))") }
            var n: UInt32 = 0
            guard ck_ioctl(fd, TtyIoctl.getPtn, &n) == 0 else { close(fd); throw fail("TIOCGPTN: \(String(cString: strerror(errno)))") }
            if n == index { return fd }
            spare.append(fd)
            // Lower free indexes were handed out first: this one is someone else's.
            if n > index { throw fail("\(slavePath) is taken by another process (\(ptmx) gave index \(n))") }
        }
        throw fail("\(ptmx) never gave index \(index)")
    }

    /// tty-data.img, read once.
    func data(_ images: ImageDirectory) throws -> [Img_TtyDataEntry] {
        if let dataEntries { return dataEntries }
        let all = images.exists(.ttyData) ? try images.read(.ttyData, as: Img_TtyDataEntry.self) : []
        dataEntries = all
        return all
    }
}
