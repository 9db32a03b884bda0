import Foundation
import Glibc

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
    /// Regular-file entries a kind adds besides its own (a FIFO's path lives in one).
    var extraEntries: [Img_FileEntry] = []
    private var nextExtraID: UInt32 = 0x4000_0000

    /// The fds of the task being dumped now, with their targets (epoll and unix peers
    /// look at them).
    private(set) var pid: Int32 = 0
    private(set) var fds: [Int32: OpenFd] = [:]
    private var pidfd: Int32 = -1
    private var copies: [Int32: Int32] = [:]

    /// Every pid being dumped: a pipe end held outside them cannot be restored.
    var treePids: Set<Int32> = []
    private var pipeHolders: [UInt64: Set<Int32>]?

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

    deinit { endTask() }

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
        copies = [:]
        if pidfd >= 0 { close(pidfd); pidfd = -1 }
    }

    /// cryo's own copy of the task's `fd`: the same open file description (offset, flags and
    /// queue shared), closed by endTask. Reading through it must not consume the task's data.
    func copy(of fd: Int32) throws -> Int32 {
        if let c = copies[fd] { return c }
        let c = try Sys.pidfdGetfd(pidfd: pidfd, fd: fd, context: "pid \(pid) fd \(fd)")
        copies[fd] = c
        return c
    }

    /// An id for an entry no fd of the task names directly.
    func extraID() -> UInt32 {
        nextExtraID += 1
        return nextExtraID
    }

    /// Writes the images that hold the state outside files.img.
    func write(to images: ImageDirectory) throws {
        if !pipeData.isEmpty { try images.writeWithPayloads(.pipesData, pipeData) }
        if !fifoData.isEmpty { try images.writeWithPayloads(.fifoData, fifoData) }
        if !skQueues.isEmpty { try images.writeWithPayloads(.skQueues, skQueues) }
        if !memfdInodes.isEmpty {
            try images.write(.memfdInode, entries: memfdInodes)
            for m in memfdInodes { try MemFd.writeContents(memfdContents[m.shmid] ?? [], shmid: m.shmid, images: images) }
        }
    }
}

/// What a kind's restore may use: the task, the transport for objects made in cryo, the
/// images, and tables shared by every fd (and later every task) of the restore.
final class FileRestoreContext {
    let task: RestoreTarget
    let transport: FdTransport
    let images: ImageDirectory
    let files: [UInt32: Img_FileEntry]
    /// File id -> cryo's own fd of the object, for objects made in cryo: installing the same
    /// file into another task is sending this fd again.
    var objects: [UInt32: Int32] = [:]
    /// Pipes by pipe_id: both ends made by one pipe2, one end per file id.
    var pipes: [UInt32: (read: Int32, write: Int32)] = [:]
    /// FIFOs by pipe_id: cryo's read-write fd that keeps each one open while it is rebuilt.
    var fifos: [UInt32: Int32] = [:]
    /// memfd inodes by shmid: cryo's fd of the memfd, reopened for each description.
    var memfds: [UInt32: Int32] = [:]
    /// The second end of a unix socketpair made for the first one, by its inode, waiting for
    /// its own fd entry.
    var unixPairs: [UInt32: Int32] = [:]
    /// Where each file id sits in the task once installed (its first fd number).
    var placed: [UInt32: Int32] = [:]
    /// Files a kind installed ahead of their turn (the server end of an accepted connection
    /// comes with its client), parked above every wanted fd number until their turn.
    var parked: [UInt32: Int32] = [:]
    /// Descriptors cryo opened only to build state (a FIFO kept open so it does not block);
    /// closed with the context.
    var keepers: [Int32] = []
    private var payloadCache: [ImageKind: [(Img_PipeDataEntry, [UInt8])]] = [:]
    private var queueCache: [(Img_SkPacketEntry, [UInt8])]?

    init(task: RestoreTarget, transport: FdTransport, images: ImageDirectory, files: [UInt32: Img_FileEntry]) {
        self.task = task
        self.transport = transport
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

    /// Sends cryo's `fd` for file `id` into the task; cryo keeps it in `objects`.
    func install(_ fd: Int32, id: UInt32, what: String) throws -> Int32 {
        objects[id] = fd
        return try transport.send(fd, to: task, what: what)
    }

    /// The data recorded for one pipe or FIFO, or nil when it had none.
    func pipeData(_ kind: ImageKind, pipeID: UInt32) throws -> (Img_PipeDataEntry, [UInt8])? {
        if payloadCache[kind] == nil {
            payloadCache[kind] = images.exists(kind) ? try images.readWithPayloads(kind, as: Img_PipeDataEntry.self) { Int($0.bytes) } : []
        }
        return payloadCache[kind]!.first { $0.0.pipeID == pipeID }
    }

    /// The packets queued to socket file `id`, in order.
    func queue(for id: UInt32) throws -> [[UInt8]] {
        if queueCache == nil {
            queueCache = images.exists(.skQueues) ? try images.readWithPayloads(.skQueues, as: Img_SkPacketEntry.self) { Int($0.length) } : []
        }
        return queueCache!.filter { $0.0.idFor == id }.map(\.1)
    }
}
