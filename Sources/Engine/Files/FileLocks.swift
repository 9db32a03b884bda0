/// File locks held through the tree's fds, taken with `dump --file-locks` into CRIU's
/// file-lock.img: each names the task that sets it again at restore and the fd it uses.
/// flock and OFD locks and leases belong to an open file description, POSIX locks to a task's
/// fd table; the kernel shows each in the fdinfo of the fds it is held through.
final class FileLockDumper {
    /// CRIU's fl_kind values (file-lock.h).
    enum Flag {
        static let posix: UInt32 = 1, flock: UInt32 = 2, ofd: UInt32 = 4, lease: UInt32 = 8
    }

    /// --file-locks: without it a held lock refuses the dump, as CRIU's does.
    var enabled = false
    /// Pids as the images name them (the tree's pid namespace); entries hold cryo's.
    var pids = PidMap()
    private(set) var entries: [Img_FileLockEntry] = []
    /// One entry per lock: an fd dup'ed, or a description shared by tasks, shows it again.
    private var seen: Set<String> = []

    /// Records the locks held through `f` (files.img id `id`), or refuses the one cryo could
    /// not set again exactly. `sameTable(pid)`: whether `pid` shares the fd table of `f`'s task.
    func note(_ f: OpenFd, id: UInt32, treePids: Set<Int32>, sameTable: (Int32) throws -> Bool) throws {
        for l in f.info.locks {
            func refuse(_ why: String) -> DumpError {
                .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "holds a file lock (\(l.text)), \(why)")
            }
            guard enabled else { throw refuse("which cryo dumps only with --file-locks") }
            guard !l.blocked else { continue }
            if let why = FileLockDumper.breaking(l) { throw refuse(why) }
            let type: UInt32
            switch l.type {
            case "READ": type = 0  // F_RDLCK
            case "WRITE": type = 1  // F_WRLCK
            default: throw refuse("of type \(l.type), which cryo does not restore")
            }
            let len: Int64 = l.end.map { $0 - l.start + 1 } ?? 0
            var e = Img_FileLockEntry()
            e.type = type
            e.pid = f.pid
            e.fd = f.fd
            e.start = 0
            e.len = 0
            let key: String
            switch l.kind {
            case "FLOCK":
                guard l.mode == "ADVISORY" else { throw refuse("a \(l.mode) flock, which cryo does not restore") }
                e.flag = Flag.flock
                key = "flock \(id)"
            case "OFDLCK":
                guard l.mode == "ADVISORY" else { throw refuse("a \(l.mode) lock, which cryo does not restore") }
                e.flag = Flag.ofd
                e.start = l.start; e.len = len
                key = "ofd \(id) \(type) \(l.start) \(len)"
            case "POSIX":
                guard l.mode == "ADVISORY" else { throw refuse("a \(l.mode) lock, which cryo does not restore") }
                // Owned by the fd table; the kernel names the process that took it, which
                // must be one of the tree's sharing that table to take it again.
                if l.pid != f.pid {
                    guard treePids.contains(l.pid), try sameTable(l.pid) else {
                        throw refuse("taken by pid \(l.pid), which is not in the dumped tree with this fd table")
                    }
                }
                e.flag = Flag.posix
                e.pid = l.pid
                e.start = l.start; e.len = len
                key = "posix \(l.pid) \(id) \(type) \(l.start) \(len)"
            case "LEASE":
                // Noted already through the taker's fd (parents are dumped first).
                if seen.contains("lease \(id)") { continue }
                // F_SETLEASE makes the caller the file's owner for SIGIO: the task that took
                // it is the one that must take it again.
                guard l.pid == f.pid else { throw refuse("taken by pid \(l.pid), not by this process") }
                e.flag = Flag.lease
                key = "lease \(id)"
            default:
                throw refuse("a \(l.kind) lock, which cryo does not restore")
            }
            if seen.insert(key).inserted { entries.append(e) }
        }
    }

    /// Why lock `l` is a lease that cannot come back: an open is waiting for it (its type is
    /// the one it is breaking to), which restore could not start again.
    static func breaking(_ l: ProcFileLock) -> String? {
        l.kind == "LEASE" && l.mode != "ACTIVE" ? "a lease being broken, which cryo does not restore" : nil
    }

    /// Whether the F_SETOWN owner `pid` (type `ownerType`, F_OWNER_*) of `f` is the one its
    /// lease set, which restoring the lease sets again.
    func ownerIsLease(_ f: OpenFd, ownerType: Int32, pid: Int32) -> Bool {
        enabled && ownerType == 1 /* F_OWNER_PID */ && f.info.locks.contains { $0.kind == "LEASE" && $0.mode == "ACTIVE" && $0.pid == pid && pid == f.pid }
    }

    func write(to images: ImageDirectory) throws {
        if !entries.isEmpty {
            try images.write(.fileLocks, entries: entries.map { var e = $0; e.pid = pids.image(e.pid); return e })
        }
    }
}
