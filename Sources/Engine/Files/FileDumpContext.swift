import Foundation
import Glibc
import Logging

/// What a kind's dump may use besides the fd itself: copies of the task's fds in cryo (through
/// pidfd_getfd, so nothing in the task changes), the task's other fds, and the images that
/// hold state outside files.img. One per dump, shared by every task of the tree.
final class FileDumpContext {
    let proc: ProcReader
    /// pipes-data.img / fifo-data.img: one entry per pipe, with its bytes in flight.
    var pipeData: [(Img_PipeDataEntry, [UInt8])] = []
    var fifoData: [(Img_PipeDataEntry, [UInt8])] = []
    /// Pipes (by inode) whose data is already recorded: both ends share it.
    var pipesSeen: Set<String> = []
    /// sk-queues.img: queued packets, in queue order, each for the socket file id `id_for`.
    var skQueues: [(Img_SkPacketEntry, [UInt8])] = []
    /// memfd.img and each memfd's contents (written as a shmem pagemap and pages).
    var memfdInodes: [Img_MemfdInodeEntry] = []
    var memfdContents: [UInt32: [UInt8]] = [:]
    var memfdByInode: [UInt64: UInt32] = [:]
    /// tcp-stream images: one established connection each, by socket inode, with cryo's
    /// repair-mode copy it was read through (see settleTcp).
    var tcpStreams: [(ino: UInt32, entry: Img_TcpStreamEntry, bytes: [UInt8], fd: Int32, what: String, state: Int32)] = []
    /// cryo's copies of the TCP sockets it put in repair mode, kept until the dump ends: see
    /// finishRepair. Not among `copies`, which close with each task.
    var repaired: [(fd: Int32, what: String, reuseaddr: Bool)] = []
    /// Problems met while turning repair off, for the caller to report.
    private(set) var repairErrors: [String] = []
    /// Regular-file entries a kind adds besides its own (a FIFO's path lives in one).
    var extraEntries: [Img_FileEntry] = []
    private var nextExtraID: UInt32 = 0x4000_0000

    /// The fds of the task being dumped now, with their targets (epoll and unix peers
    /// look at them).
    private(set) var pid: Int32 = 0
    private(set) var fds: [Int32: OpenFd] = [:]
    private var pidfd: Int32 = -1
    private var copies: [Int32: Int32] = [:]
    /// cryo's dups of its own fds (files in flight), closed with the task's copies.
    private var ownCopies: [Int32] = []

    /// Files in flight (SCM_RIGHTS) in the queues of dumped sockets: cryo's fds, installed by
    /// the peeks. They stay open until the dump ends, so that kcmp can find a task's fd that
    /// is the same description, wherever in the dump order it comes.
    private(set) var inFlight: [Int32] = []
    /// The inodes of the unix sockets among them: a dumped socket may be connected to one.
    private(set) var inFlightSockets: Set<UInt32> = []
    /// Gives a file in flight (cryo's `fd`, found in the queue of `carrier`) its files.img id,
    /// dumping it if no dumped fd is the same description. Set by FileTable.
    var dumpInFlight: ((_ fd: Int32, _ carrier: OpenFd) throws -> UInt32)?

    /// --shell-job: terminals are the shell's, and restore opens the caller's in their place.
    var shellJob = false
    /// --ext-unix-sk, and the files.img ids of the outside sockets written for it, by inode.
    var extUnixSk = ExtUnixSk()
    var externalUnixPeers: [UInt32: UInt32] = [:]
    /// The tree runs on after this dump (--leave-running, --leave-stopped).
    var leavesRunning = false
    /// The mount ids of a tree that pivoted into a mount tree of its own: a file on another
    /// mount is refused. nil: the tree sees cryo's mounts.
    var mountIDs: Set<Int32>?
    /// File locks held through the tree's fds (file-lock.img).
    let locks = FileLockDumper()
    /// The tree's ptys (tty-info.img), and who holds each end.
    let ttys = TtyDumpState()
    /// Pids as the images name them (the tree's pid namespace).
    var pids = PidMap() { didSet { locks.pids = pids } }
    /// CRIU's ns ids of the namespaces known to the dump (cryo's own and the tree's), by kind
    /// and inode: an fd of a namespace names one of them.
    var namespaceIDs: [NamespaceKind: [UInt64: UInt32]] = [:]
    /// Inodes of cryo's own namespaces and of the tree root's, by kind.
    var hostNamespaces: [NamespaceKind: UInt64] = [:], treeNamespaces: [NamespaceKind: UInt64] = [:]
    /// Every pid being dumped: a pipe end held outside them cannot be restored.
    var treePids: Set<Int32> = []
    private var pipeHolders: [UInt64: Set<Int32>]?

    private let log = Logger(label: "dump")

    init(proc: ProcReader) { self.proc = proc }

    /// Processes other than cryo holding an fd of the pipe with inode `ino`, found by one scan
    /// of every process's fds (done on the first call).
    func holders(ofPipe ino: UInt64) -> Set<Int32> {
        if pipeHolders == nil {
            var map: [UInt64: Set<Int32>] = [:]
            let me = getpid()
            let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
            for p in pids where p != me {
                // Processes come and go while we look; the ones we cannot read hold nothing of ours.
                for fd in (try? proc.fds(pid: p)) ?? [] {
                    guard let t = try? proc.fdTarget(pid: p, fd: fd), t.hasPrefix("pipe:["), let i = UInt64(t.dropFirst(6).dropLast()) else { continue }
                    map[i, default: []].insert(p)
                }
            }
            pipeHolders = map
        }
        return pipeHolders?[ino] ?? []
    }

    private var treeSockets: Set<UInt32>?
    /// The inodes of the sockets any task of the tree holds (read once: the tree is frozen).
    func socketsOfTree() -> Set<UInt32> {
        if let s = treeSockets { return s }
        var s: Set<UInt32> = []
        for p in treePids {
            for fd in (try? proc.fds(pid: p)) ?? [] {
                guard let t = try? proc.fdTarget(pid: p, fd: fd), t.hasPrefix("socket:["), let i = UInt32(t.dropFirst(8).dropLast()) else { continue }
                s.insert(i)
            }
        }
        treeSockets = s
        return s
    }

    /// The access modes (O_RDONLY, O_WRONLY) of the tree's fds of the pipe with inode `ino`.
    func treeEnds(ofPipe ino: UInt64) -> Set<Int32> {
        var ends: Set<Int32> = []
        for p in treePids {
            for fd in (try? proc.fds(pid: p)) ?? [] {
                guard let t = try? proc.fdTarget(pid: p, fd: fd), t == "pipe:[\(ino)]",
                      let info = try? proc.fdinfo(pid: p, fd: fd) else { continue }
                ends.insert(info.flags & O_ACCMODE)
            }
        }
        return ends
    }

    deinit {
        endTask()
        closeInFlight()
        // A dump that ends without saying otherwise leaves its connections working.
        finishRepair(connectionsVanish: false)
    }

    /// Ends repair mode on the dumped connections. When the tree has been killed they stay
    /// in repair mode and are just closed: the kernel then drops them without a FIN or RST,
    /// so the peer sees nothing until the restored copy takes over (what CRIU does). Otherwise
    /// (left running or stopped, or a failed dump) repair goes off and the connection carries
    /// on; the kernel sends a window probe to resynchronise with the peer.
    func finishRepair(connectionsVanish: Bool) {
        for r in repaired {
            if !connectionsVanish {
                var off: Int32 = 0
                if setsockopt(r.fd, Int32(IPPROTO_TCP), TcpRepair.repair, &off, 4) != 0 {
                    repairErrors.append("\(r.what): TCP_REPAIR off: \(String(cString: strerror(errno)))")
                }
                // Repair off cleared SO_REUSEADDR (sk_reuse = SK_NO_REUSE) on the live socket.
                var one: Int32 = 1
                if r.reuseaddr && setsockopt(r.fd, SOL_SOCKET, SO_REUSEADDR, &one, 4) != 0 {
                    repairErrors.append("\(r.what): SO_REUSEADDR back on: \(String(cString: strerror(errno)))")
                }
            }
            close(r.fd)
        }
        repaired = []
    }


    /// Makes the connections' readings one consistent cut. Repair mode stops neither input nor
    /// ACKs, so a connection read early can still receive, and ACK, data its peer sends before
    /// the peer is read: the peer's image then lacks bytes it thinks delivered and this one's
    /// lacks them too, and the restored stream stalls for good. Every connection is in repair
    /// mode by now and is read again: when no reading changed, each held still over an
    /// interval containing the moment between the two rounds, so together they are the state
    /// of that moment. Otherwise the new readings replace the old and the rounds go on.
    func settleTcp() throws {
        guard !tcpStreams.isEmpty else { return }
        for round in 1...100 {
            var moved: [String] = []
            for i in tcpStreams.indices {
                let t = tcpStreams[i]
                let (entry, bytes) = try TcpRepair.take(t.fd, state: t.state, what: t.what) {
                    .fdState(pid: 0, fd: t.fd, target: t.what, reason: $0)
                }
                if !TcpRepair.sameCut(entry, t.entry) {
                    moved.append(t.what)
                    tcpStreams[i].entry = entry
                    tcpStreams[i].bytes = bytes
                }
            }
            if moved.isEmpty { return }
            log.debug("TCP connections moved after they were read (round \(round)), read again: \(moved.joined(separator: "; "))")
            usleep(2000)
        }
        throw DumpError.fdState(pid: 0, fd: -1, target: "TCP connections", reason: "they kept exchanging data for 100 rounds after every one was in repair mode")
    }

    /// Starts dumping the fds of `pid`.
    func beginTask(pid: Int32, fds: [Int32: OpenFd]) throws {
        endTask()
        self.pid = pid
        self.fds = fds
        treePids.insert(pid)
        pidfd = try Sys.pidfdOpen(pid)
    }

    /// Closes the copies of the task's fds.
    func endTask() {
        for (_, c) in copies { close(c) }
        for c in ownCopies { close(c) }
        copies = [:]
        ownCopies = []
        if pidfd >= 0 { close(pidfd); pidfd = -1 }
    }

    /// cryo's own copy of `f`: the same open file description (offset, flags and queue
    /// shared), closed by endTask. Reading through it must not consume the task's data. A
    /// file in flight is cryo's already, and is simply dup'ed.
    func copy(of f: OpenFd) throws -> Int32 {
        if f.pid == getpid() {
            let c = fcntl(f.fd, F_DUPFD_CLOEXEC, 0)
            guard c >= 0 else { throw SystemCallError(call: "fcntl(F_DUPFD_CLOEXEC)", errno: errno, context: "cryo's fd \(f.fd) (\(f.target)), in flight") }
            ownCopies.append(c)
            return c
        }
        precondition(f.pid == pid, "copy of pid \(f.pid) fd \(f.fd) while dumping pid \(pid)")
        if let c = copies[f.fd] { return c }
        let c = try Sys.pidfdGetfd(pidfd: pidfd, fd: f.fd, context: "pid \(pid) fd \(f.fd)")
        copies[f.fd] = c
        return c
    }

    /// Takes the fds a peek installed in cryo; they are closed when the dump ends.
    func adoptInFlight(_ fds: [Int32]) {
        inFlight += fds
        for fd in fds {
            var st = stat()
            if fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK { inFlightSockets.insert(UInt32(truncatingIfNeeded: st.st_ino)) }
        }
    }

    /// The files.img id of cryo's `fd`, in flight in the queue of `carrier`.
    func inFlightID(_ fd: Int32, carrier: OpenFd) throws -> UInt32 {
        guard let dump = dumpInFlight else {
            throw DumpError.inFlight(pid: carrier.pid, fd: carrier.fd, target: carrier.target, kind: "file", reason: "no file table to record it in")
        }
        return try dump(fd, carrier)
    }

    func closeInFlight() {
        for fd in inFlight { close(fd) }
        inFlight = []
        inFlightSockets = []
    }

    /// An id for an entry no fd of the task names directly.
    func extraID() -> UInt32 {
        nextExtraID += 1
        return nextExtraID
    }

    /// Writes the images that hold the state outside files.img.
    func write(to images: ImageDirectory) throws {
        try settleTcp()
        if !pipeData.isEmpty { try images.writeWithPayloads(.pipesData, pipeData) }
        if !fifoData.isEmpty { try images.writeWithPayloads(.fifoData, fifoData) }
        if !skQueues.isEmpty { try images.writeWithPayloads(.skQueues, skQueues) }
        try locks.write(to: images)
        try ttys.write(to: images, ctx: self)
        for t in tcpStreams { try images.writeWithPayloads(.tcpStream, id: Int(t.ino), [(t.entry, t.bytes)]) }
        if !memfdInodes.isEmpty {
            try images.write(.memfdInode, entries: memfdInodes)
            for m in memfdInodes { try MemFd.writeContents(memfdContents[m.shmid] ?? [], shmid: m.shmid, images: images) }
        }
    }
}
