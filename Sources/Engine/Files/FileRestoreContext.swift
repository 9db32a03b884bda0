import Glibc

/// The objects one restore made in cryo, shared by every task it rebuilds: a file installed
/// into several tasks (an inherited pipe, a shared socket) is made once and sent to each.
/// Closed when the restore is done: by then every task holds its own copies.
final class RestoredObjects {
    let images: ImageDirectory
    let files: [UInt32: Img_FileEntry]
    /// File id -> cryo's own fd of the object: installing the same file into another task is
    /// sending this fd again.
    var objects: [UInt32: Int32] = [:]
    /// Where cryo finds the tree's files: "" (its own root) or the root's /proc/PID/root when
    /// the tree has a mount tree of its own.
    var root = ""
    /// Pipes by pipe_id: both ends made by one pipe2, one end per file id.
    var pipes: [UInt32: (read: Int32, write: Int32)] = [:]
    /// FIFOs by pipe_id: cryo's read-write fd that keeps each one open while it is rebuilt.
    var fifos: [UInt32: Int32] = [:]
    /// memfd inodes by shmid: cryo's fd of the memfd, reopened for each description.
    var memfds: [UInt32: Int32] = [:]
    /// The memfd inodes whose object is memfd_create's own description, not yet handed to a
    /// read-write fd of the tree (MemFd.restore).
    var memfdsToGive: Set<UInt32> = []
    /// The shared anonymous memory the tree maps, which an fd of it must be.
    var sharedMemory: SharedMemoryObjects?
    /// --inherit-fd: the caller's fds for objects the tree shared with the outside.
    var inherited = InheritedFds()
    var extUnixSk = false
    /// Ghost files; O_TMPFILE ones are made when a task first needs them.
    var ghosts: GhostFiles?
    /// The second end of a unix socketpair made for the first one, by its inode, waiting for
    /// its own fd entry.
    var unixPairs: [UInt32: Int32] = [:]
    /// Established TCP connections rebuilt in repair mode, with the bytes of their send queue
    /// never sent. They stay in repair mode until every task has its files (finishTcp):
    /// a live connection whose peer is not rebuilt yet would be reset by the first segment.
    var tcpInRepair: [(fd: Int32, unsent: [UInt8], sndbuf: UInt32, opts: Img_SkOptsEntry, what: String, fins: TcpFins?)] = []
    /// Descriptors cryo opened only to build state (a FIFO kept open so it does not block).
    var keepers: [Int32] = []
    /// With --shell-job: the caller's terminal, which the tree's terminal fds open instead.
    var terminal: String?
    /// file-lock.img: every task takes its own again once its fds are in place.
    var fileLocks: [Img_FileLockEntry] = []
    /// The ptys made so far (their fds are in `objects` and `keepers`).
    let ptys = RestoredPtys()
    private var payloadCache: [ImageKind: [(Img_PipeDataEntry, [UInt8])]] = [:]
    private var queueCache: [(Img_SkPacketEntry, [UInt8])]?

    init(images: ImageDirectory, files: [UInt32: Img_FileEntry]) {
        self.images = images
        self.files = files
    }

    deinit { closeAll() }

    func closeAll() {
        var closed = Set<Int32>()
        let all = Array(objects.values) + keepers + pipes.values.flatMap({ [$0.read, $0.write] }) + Array(fifos.values) + Array(memfds.values) + Array(unixPairs.values)
        for fd in all where fd >= 0 {
            if closed.insert(fd).inserted { close(fd) }
        }
        objects = [:]; keepers = []; pipes = [:]; fifos = [:]; memfds = [:]; unixPairs = [:]
    }

    /// Turns the rebuilt connections live: repair off (the kernel sends a window probe), then
    /// the never-sent part of each send queue through a plain send, as the process would have.
    func finishTcp() throws {
        // The FINs of half-closed connections first, every connection still in repair mode
        // (the peers' too, so an answer finds its socket).
        for t in tcpInRepair { if let f = t.fins { try f.restore(t.fd, unsent: !t.unsent.isEmpty, what: t.what) } }
        for t in tcpInRepair {
            var off: Int32 = 0
            guard setsockopt(t.fd, Int32(IPPROTO_TCP), TcpRepair.repair, &off, 4) == 0 else {
                throw SystemCallError(call: "setsockopt(TCP_REPAIR off)", errno: errno, context: t.what)
            }
            var done = 0
            while done < t.unsent.count {
                let n = t.unsent.withUnsafeBytes { send(t.fd, $0.baseAddress! + done, t.unsent.count - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw SystemCallError(call: "send of unsent data (\(t.unsent.count - done) of \(t.unsent.count) bytes left)", errno: n < 0 ? errno : EIO, context: t.what)
                }
                done += n
            }
            if let f = t.fins, !t.unsent.isEmpty { try f.afterUnsent(t.fd, what: t.what) }
            // Grown for the refill; the dumped size again (the kernel doubles what it is given).
            if t.sndbuf > 0 {
                var v = Int32(bitPattern: t.sndbuf / 2)
                guard setsockopt(t.fd, SOL_SOCKET, 32 /* SO_SNDBUFFORCE */, &v, 4) == 0 else {
                    throw SystemCallError(call: "setsockopt(SO_SNDBUFFORCE)", errno: errno, context: t.what)
                }
            }
            // Repair off cleared SO_REUSEADDR (sk_reuse = SK_NO_REUSE).
            if t.opts.reuseaddr {
                var one: Int32 = 1
                guard setsockopt(t.fd, SOL_SOCKET, SO_REUSEADDR, &one, 4) == 0 else {
                    throw SystemCallError(call: "setsockopt(SO_REUSEADDR)", errno: errno, context: t.what)
                }
            }
            // Setting a size locked it: the dumped locks again.
            if t.opts.hasSoBufLock {
                var lock = Int32(bitPattern: t.opts.soBufLock)
                guard setsockopt(t.fd, SOL_SOCKET, SocketOptions.soBufLock, &lock, 4) == 0 else {
                    throw SystemCallError(call: "setsockopt(SO_BUF_LOCK)", errno: errno, context: t.what)
                }
            }
        }
        tcpInRepair = []
    }

    /// The data recorded for one pipe or FIFO, or nil when it had none.
    func pipeData(_ kind: ImageKind, pipeID: UInt32) throws -> (Img_PipeDataEntry, [UInt8])? {
        if payloadCache[kind] == nil {
            payloadCache[kind] = images.exists(kind) ? try images.readWithPayloads(kind, as: Img_PipeDataEntry.self) { Int($0.bytes) } : []
        }
        return payloadCache[kind]!.first { $0.0.pipeID == pipeID }
    }

    /// The packets queued to socket file `id`, in order, with their control data.
    func queue(for id: UInt32) throws -> [(Img_SkPacketEntry, [UInt8])] {
        if queueCache == nil {
            queueCache = images.exists(.skQueues) ? try images.readWithPayloads(.skQueues, as: Img_SkPacketEntry.self) { Int($0.length) } : []
        }
        return queueCache!.filter { $0.0.idFor == id }
    }
}

/// What a kind's restore may use for one task: the task, the transport into it, where its
/// files sit so far, and the objects shared by the whole restore.
final class FileRestoreContext {
    let task: RestoreTarget
    let transport: FdTransport
    let shared: RestoredObjects
    /// Where each file id sits in the task once installed (its first fd number).
    var placed: [UInt32: Int32] = [:]
    /// Files a kind installed ahead of their turn (the server end of an accepted connection
    /// comes with its client), parked above every wanted fd number until their turn.
    var parked: [UInt32: Int32] = [:]
    /// Set while making a file in flight that no task holds yet: it is made in cryo and
    /// installed nowhere (a task that holds it too gets the same object later).
    let cryoOnly: Bool

    init(task: RestoreTarget, transport: FdTransport, shared: RestoredObjects, cryoOnly: Bool = false) {
        self.task = task
        self.transport = transport
        self.shared = shared
        self.cryoOnly = cryoOnly
    }

    var images: ImageDirectory { shared.images }
    var files: [UInt32: Img_FileEntry] { shared.files }
    var objects: [UInt32: Int32] { get { shared.objects } set { shared.objects = newValue } }
    var pipes: [UInt32: (read: Int32, write: Int32)] { get { shared.pipes } set { shared.pipes = newValue } }
    var fifos: [UInt32: Int32] { get { shared.fifos } set { shared.fifos = newValue } }
    var memfds: [UInt32: Int32] { get { shared.memfds } set { shared.memfds = newValue } }
    var sharedMemory: SharedMemoryObjects? { shared.sharedMemory }
    var inherited: InheritedFds { shared.inherited }
    var extUnixSk: Bool { shared.extUnixSk }
    var unixPairs: [UInt32: Int32] { get { shared.unixPairs } set { shared.unixPairs = newValue } }
    var keepers: [Int32] { get { shared.keepers } set { shared.keepers = newValue } }
    func pipeData(_ kind: ImageKind, pipeID: UInt32) throws -> (Img_PipeDataEntry, [UInt8])? { try shared.pipeData(kind, pipeID: pipeID) }
    func queue(for id: UInt32) throws -> [(Img_SkPacketEntry, [UInt8])] { try shared.queue(for: id) }

    /// Sends cryo's `fd` for file `id` into the task; cryo keeps it in `objects`. When
    /// cryoOnly, nothing is sent and cryo's fd is returned.
    func install(_ fd: Int32, id: UInt32, what: String) throws -> Int32 {
        objects[id] = fd
        if cryoOnly { return fd }
        return try transport.send(fd, to: task, what: what)
    }

    /// cryo's object for file `id`, in flight in a queue about to be refilled: the one made
    /// already (for a task, or in flight elsewhere), else one made now in cryo by its kind.
    /// It is closed with the others when the restore ends.
    func inFlight(_ id: UInt32, what: String) throws -> Int32 {
        if let o = objects[id] { return o }
        guard let f = files[id], let kind = FdKinds.kind(for: f.type) else {
            throw RestoreError.file(pid: task.pid, id: id, what: what, reason: "file id \(id), in flight in its queue, has no entry in files.img")
        }
        _ = try kind.restore(f, ctx: FileRestoreContext(task: task, transport: transport, shared: shared, cryoOnly: true))
        guard let o = objects[id] else {
            throw RestoreError.file(pid: task.pid, id: id, what: what, reason: "the \(kind.name) in flight in its queue (file id \(id)) was not made")
        }
        return o
    }
}
