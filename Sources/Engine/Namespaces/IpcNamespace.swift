import CKernel
import Foundation
import Glibc

/// An IPC namespace of the tree's own (CRIU's ipcns-var/shm/sem/msg-ID.img): its limits and
/// next-id cursors, shm segments with their bytes, semaphore sets with their values, message
/// queues with every message. Objects come back with the same ids (through the *_next_id
/// sysctls, as CRIU does), keys, owners and modes; the tree's attachments are VMAs that name
/// the segment's id (VmaStatus.sysvipc). See docs/SYSV-IPC.md.
enum IpcNamespace: NamespaceContents {
    static let kind = NamespaceKind.ipc

    static let semLimits = "kernel/sem"
    static let msgmax = "kernel/msgmax"
    /// Every limit but kernel/sem (four numbers) and shm_rmid_forced (set last: see restore).
    static var limits: [(String, WritableKeyPath<Img_IpcVarEntry, UInt64>)] { [
        (msgmax, \.msgMax), ("kernel/msgmnb", \.msgMnb), ("kernel/msgmni", \.msgMni),
        ("kernel/shmmax", \.shmCtlmax), ("kernel/shmall", \.shmCtlall), ("kernel/shmmni", \.shmMni),
        ("fs/mqueue/queues_max", \.mqQueues), ("fs/mqueue/msg_max", \.mqMsg), ("fs/mqueue/msgsize_max", \.mqMsgsize),
        ("fs/mqueue/msg_default", \.mqMsgDefault64), ("fs/mqueue/msgsize_default", \.mqMsgsizeDefault64),
    ] }
    static let rmidForced = "kernel/shm_rmid_forced"
    static var nextIDs: [(String, WritableKeyPath<Img_IpcVarEntry, UInt32>)] { [
        ("kernel/shm_next_id", \.shmNextID), ("kernel/sem_next_id", \.semNextID), ("kernel/msg_next_id", \.msgNextID),
    ] }

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let inode = try proc.namespaceInode(pid: pid, kind: "ipc")
        func refuse(_ why: String) -> NamespaceError { .unsupported(pid: pid, kind: "ipc", inode: inode, reason: why) }
        let nsRoot = namespaceRoot(pid)
        let (vars, shm, sem, msg) = try NamespaceThread.run(in: [.ipc], of: pid) {
            () throws -> (Img_IpcVarEntry, [IpcImages.Segment], [IpcImages.SemSet], [IpcImages.Queue]) in
            func number(_ name: String) throws -> UInt64 {
                let t = try proc.readText("/proc/sys/\(name)").trimmingCharacters(in: .whitespacesAndNewlines)
                guard let v = UInt64(t) ?? Int64(t).map({ UInt64(bitPattern: $0) }) else { throw refuse("/proc/sys/\(name) reads \(t), not a number") }
                return v
            }
            var v = Img_IpcVarEntry()
            let sem = try proc.readText("/proc/sys/\(semLimits)").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            v.semCtls = sem.compactMap { UInt32($0) }
            for (name, path) in limits { v[keyPath: path] = try number(name) }
            v.autoMsgmni = 0  // gone from the kernel since 4.1
            v.shmRmidForced = UInt32(truncatingIfNeeded: try number(rmidForced))
            for (name, path) in nextIDs { v[keyPath: path] = UInt32(truncatingIfNeeded: try number(name)) }
            var segs: [IpcImages.Segment] = []
            for s in try SysVIpc.segments() {
                if v.shmRmidForced != 0 && s.attached == 0 {
                    throw refuse("SysV shm id \(s.desc.id) key 0x\(String(s.desc.key, radix: 16)) is attached by no one under shm_rmid_forced=1: it lives only while its creator does, and its creator cannot be restored")
                }
                var e = Img_IpcShmEntry()
                e.desc = s.desc; e.size = s.size; e.inPagemaps = false
                segs.append(IpcImages.Segment(entry: e, data: try SysVIpc.contents(id: Int(s.desc.id), size: s.size)))
            }
            let sets = try SysVIpc.semSets().map { d, values -> IpcImages.SemSet in
                var e = Img_IpcSemEntry()
                e.desc = d; e.nsems = UInt32(values.count)
                return IpcImages.SemSet(entry: e, values: values)
            }
            // MSG_COPY copies nothing above msgmax, which may have been lowered under queued
            // messages: raised while they are read (the tree is frozen, the namespace its own).
            let raised = try SysVIpc.biggestQueue()
            if raised > Int(v.msgMax) { try writeLimit(msgmax, String(raised), nsRoot: nsRoot, pid: pid) }
            let read = Result { try SysVIpc.queues(msgmax: max(raised, Int(v.msgMax))) }
            if raised > Int(v.msgMax) { try writeLimit(msgmax, String(v.msgMax), nsRoot: nsRoot, pid: pid) }
            let queues = try read.get().map { IpcImages.Queue(entry: $0.entry, messages: $0.messages) }
            return (v, segs, sets, queues)
        }
        guard vars.semCtls.count == 4 else { throw refuse("/proc/sys/\(semLimits) does not hold four numbers") }
        try images.write(.ipcnsVar, id: Int(id), entry: vars)
        try IpcImages.writeShm(shm, id: Int(id), images: images)
        try IpcImages.writeSem(sem, id: Int(id), images: images)
        try IpcImages.writeMsg(msg, id: Int(id), images: images)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        // Dumps older than these images were taken only of namespaces a new one equals.
        guard images.exists(.ipcnsVar, Int(id)) else { return }
        for k in [ImageKind.ipcnsShm, .ipcnsSem, .ipcnsMsg] where !images.exists(k, Int(id)) {
            throw NamespaceError.restore(kind: "ipc", reason: "\(ImageKind.ipcnsVar.fileName(Int(id))) without \(k.fileName(Int(id)))")
        }
    }

    /// Before any task is rebuilt: the limits, then every object, so the tasks' attachments
    /// find their segments.
    static func build(id: UInt32, root: RestoreTarget, images: ImageDirectory, request: RestoreRequest) throws -> String? {
        guard images.exists(.ipcnsVar, Int(id)) else { return nil }
        let vars = try images.readOne(.ipcnsVar, id: Int(id), as: Img_IpcVarEntry.self)
        let shm = try IpcImages.readShm(id: Int(id), images: images)
        let sem = try IpcImages.readSem(id: Int(id), images: images)
        let msg = try IpcImages.readMsg(id: Int(id), images: images)
        let nsRoot = namespaceRoot(root.pid)
        try NamespaceThread.run(in: [.ipc], of: root.pid) {
            func set(_ name: String, _ value: String) throws { try writeLimit(name, value, nsRoot: nsRoot, pid: root.pid) }
            guard vars.semCtls.count == 4 else { throw NamespaceError.restore(kind: "ipc", reason: "kernel/sem in \(ImageKind.ipcnsVar.fileName(Int(id))) has \(vars.semCtls.count) numbers, not 4") }
            try set(semLimits, vars.semCtls.map(String.init).joined(separator: " "))
            for (name, path) in limits { try set(name, String(vars[keyPath: path])) }
            func create(_ what: String, _ d: Img_IpcDescEntry, next: String, _ make: () throws -> Int) throws {
                try set(next, String(d.id))
                let got = try SysVIpc.asCreator(d, make)
                guard got == Int(d.id) else {
                    throw NamespaceError.restore(kind: "ipc", reason: "SysV \(what) id \(d.id) key 0x\(String(d.key, radix: 16)) came back as id \(got)")
                }
            }
            let excl = Int(IPC_CREAT | IPC_EXCL)
            for s in shm {
                let d = s.entry.desc
                try create("shm", d, next: "kernel/shm_next_id") {
                    try SysVIpc.call("shmget", SysVIpc.Nr.shmget, Int(Int32(bitPattern: d.key)), Int(s.entry.size), excl | Int(d.mode & 0o777), context: "SysV shm id \(d.id)")
                }
                try SysVIpc.setPerm(ctl: SysVIpc.Nr.shmctl, id: Int(d.id), desc: d, what: "shm")
                try SysVIpc.fill(id: Int(d.id), data: s.data)
                if d.mode & SysVIpc.shmLocked != 0 {
                    _ = try SysVIpc.call("shmctl(SHM_LOCK)", SysVIpc.Nr.shmctl, Int(d.id), Int(SHM_LOCK), context: "SysV shm id \(d.id)")
                }
            }
            for s in sem {
                let d = s.entry.desc
                try create("sem", d, next: "kernel/sem_next_id") {
                    try SysVIpc.call("semget", SysVIpc.Nr.semget, Int(Int32(bitPattern: d.key)), Int(s.entry.nsems), excl | Int(d.mode & 0o777), context: "SysV sem id \(d.id)")
                }
                var values = s.values
                _ = try values.withUnsafeMutableBytes {
                    try SysVIpc.call("semctl(SETALL)", SysVIpc.Nr.semctl, Int(d.id), 0, SysVIpc.setAll, Int(bitPattern: $0.baseAddress), context: "SysV sem id \(d.id)")
                }
                try SysVIpc.setPerm(ctl: SysVIpc.Nr.semctl, id: Int(d.id), desc: d, what: "sem")
            }
            // msgsnd refuses a message above msgmax, which may have been lowered after it was sent.
            let biggest = msg.flatMap(\.messages).map(\.text.count).max() ?? 0
            if biggest > Int(vars.msgCtlmax) { try set(msgmax, String(biggest)) }
            for q in msg {
                let d = q.entry.desc
                try create("msg", d, next: "kernel/msg_next_id") {
                    try SysVIpc.call("msgget", SysVIpc.Nr.msgget, Int(Int32(bitPattern: d.key)), excl | Int(d.mode & 0o777), context: "SysV msg id \(d.id)")
                }
                try SysVIpc.setPerm(ctl: SysVIpc.Nr.msgctl, id: Int(d.id), desc: d, qbytes: q.entry.qbytes, what: "msg")
                for m in q.messages { try SysVIpc.send(queue: Int(d.id), m) }
            }
            if biggest > Int(vars.msgCtlmax) { try set(msgmax, String(vars.msgCtlmax)) }
            // -1 (unset, as each creation above leaves it) is the only value that cannot be written.
            for (name, path) in nextIDs where Int32(bitPattern: vars[keyPath: path]) >= 0 { try set(name, String(vars[keyPath: path])) }
        }
        return nil
    }

    /// Once every task is rebuilt (and has attached its segments): segments removed while
    /// attached are removed again, then shm_rmid_forced (which would destroy segments cryo
    /// made and no one had attached yet).
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {
        guard images.exists(.ipcnsVar, Int(id)) else { return }
        let vars = try images.readOne(.ipcnsVar, id: Int(id), as: Img_IpcVarEntry.self)
        let dead = try IpcImages.readShm(id: Int(id), images: images).map(\.entry.desc).filter { $0.mode & SysVIpc.shmDest != 0 }
        try NamespaceThread.run(in: [.ipc], of: root.pid) {
            for d in dead {
                guard let st = SysVIpc.segmentStat(id: Int32(d.id)), st.shm_nattch > 0 else {
                    throw NamespaceError.restore(kind: "ipc", reason: "SysV shm id \(d.id) was removed while attached, and no restored task attached it")
                }
                _ = try SysVIpc.call("shmctl(IPC_RMID)", SysVIpc.Nr.shmctl, Int(d.id), Int(IPC_RMID), context: "SysV shm id \(d.id), removed while attached")
            }
            try writeLimit(rmidForced, String(vars.shmRmidForced), nsRoot: namespaceRoot(root.pid), pid: root.pid)
        }
    }

    /// The uid here of the root of the user namespace owning `pid`'s IPC namespace.
    static func namespaceRoot(_ pid: Int32) -> UInt32 {
        ((try? ProcReader().idMap(pid: pid, "uid_map")) ?? []).first { $0.first == 0 }?.lowerFirst ?? 0
    }

    /// Writes one limit of the IPC namespace the calling thread is in, unless it has that value
    /// already. They are writable by the root of the user namespace owning it only
    /// (ipc_permissions: by euid, not by capability), which a tree's own user namespace maps
    /// to another uid here: then from a thread of its own with that euid (which drops its
    /// capabilities), in `pid`'s IPC namespace. The next-id cursors are the other way round:
    /// writable with CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN over the owning user namespace
    /// (cryo's, as root of a parent one), which that euid change would drop.
    static func writeLimit(_ name: String, _ value: String, nsRoot: UInt32, pid: Int32) throws {
        let proc = ProcReader()
        let path = "/proc/sys/\(name)"
        if (try? proc.readText(path))?.split(whereSeparator: \.isWhitespace).joined(separator: " ") == value { return }
        do {
            if nsRoot == 0 || name.hasSuffix("_next_id") { try proc.write(value, to: path); return }
            try NamespaceThread.run(in: [.ipc], of: pid) {
                guard ck_syscall6(117 /* setresuid */, -1, Int(nsRoot), -1, 0, 0, 0) == 0 else {
                    throw SystemCallError(call: "setresuid(-1, \(nsRoot))", errno: ck_errno(), context: path)
                }
                try proc.write(value, to: path)
            }
        } catch {
            throw NamespaceError.restore(kind: "ipc", reason: "setting \(name) to \(value): \(error)")
        }
    }
}

extension Img_IpcVarEntry {
    // The image's fields, as the limits table above reads and writes them (all as u64).
    var msgMax: UInt64 { get { UInt64(msgCtlmax) } set { msgCtlmax = UInt32(truncatingIfNeeded: newValue) } }
    var msgMnb: UInt64 { get { UInt64(msgCtlmnb) } set { msgCtlmnb = UInt32(truncatingIfNeeded: newValue) } }
    var msgMni: UInt64 { get { UInt64(msgCtlmni) } set { msgCtlmni = UInt32(truncatingIfNeeded: newValue) } }
    var shmMni: UInt64 { get { UInt64(shmCtlmni) } set { shmCtlmni = UInt32(truncatingIfNeeded: newValue) } }
    var mqQueues: UInt64 { get { UInt64(mqQueuesMax) } set { mqQueuesMax = UInt32(truncatingIfNeeded: newValue) } }
    var mqMsg: UInt64 { get { UInt64(mqMsgMax) } set { mqMsgMax = UInt32(truncatingIfNeeded: newValue) } }
    var mqMsgsize: UInt64 { get { UInt64(mqMsgsizeMax) } set { mqMsgsizeMax = UInt32(truncatingIfNeeded: newValue) } }
    var mqMsgDefault64: UInt64 { get { UInt64(mqMsgDefault) } set { mqMsgDefault = UInt32(truncatingIfNeeded: newValue) } }
    var mqMsgsizeDefault64: UInt64 { get { UInt64(mqMsgsizeDefault) } set { mqMsgsizeDefault = UInt32(truncatingIfNeeded: newValue) } }
}
