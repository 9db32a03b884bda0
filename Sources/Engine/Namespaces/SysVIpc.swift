import CKernel
import Foundation
import Glibc

/// SysV IPC objects of the calling thread's IPC namespace (run it on a NamespaceThread),
/// read and made through the raw syscalls: x86_64 always speaks the 64-bit ipc structures,
/// and semctl is variadic in C. Reading never changes an object: queues are read with
/// MSG_COPY, segments through a read-only attachment that is dropped at once.
enum SysVIpc {
    enum Nr { static let shmget = 29, shmat = 30, shmctl = 31, semget = 64, semctl = 66, shmdt = 67, msgget = 68, msgsnd = 69, msgrcv = 70, msgctl = 71 }
    static let shmStat = 13, shmInfo = 14, semStat = 18, semInfo = 19, msgStat = 11, msgInfo = 12
    static let getAll = 13, setAll = 17, msgCopy = 0o40000, shmDest: UInt32 = 0o1000, shmLocked: UInt32 = 0o2000

    static func call(_ name: String, _ nr: Int, _ a: Int, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0, context: String) throws -> Int {
        let r = ck_syscall6(nr, a, b, c, d, e, 0)
        guard r >= 0 else { throw SystemCallError(call: name, errno: ck_errno(), context: context) }
        return r
    }

    /// A *ctl call: semctl takes a semaphore number before the command.
    static func ctl(_ nr: Int, _ id: Int, _ cmd: Int, _ arg: UnsafeMutableRawPointer?, context: String) throws -> Int {
        let p = Int(bitPattern: arg)
        let r = nr == Nr.semctl ? ck_syscall6(nr, id, 0, cmd, p, 0, 0) : ck_syscall6(nr, id, cmd, p, 0, 0, 0)
        guard r >= 0 else { throw SystemCallError(call: "\(nr == Nr.semctl ? "semctl" : nr == Nr.shmctl ? "shmctl" : "msgctl")(\(cmd))", errno: ck_errno(), context: context) }
        return r
    }

    static func desc(_ p: ipc_perm, id: Int) -> Img_IpcDescEntry {
        var d = Img_IpcDescEntry()
        d.key = UInt32(bitPattern: p.__key); d.uid = p.uid; d.gid = p.gid; d.cuid = p.cuid; d.cgid = p.cgid
        d.mode = UInt32(truncatingIfNeeded: p.mode); d.id = UInt32(id)
        return d
    }

    /// Every object of a kind: the highest index in use (an *_INFO call), then *_STAT on each.
    static func each<T>(_ kind: String, ctl: Int, info: Int, stat: Int, _ zero: T, _ body: (Int, T) throws -> Void) throws {
        var buf = zero
        let maxIdx = try withUnsafeMutableBytes(of: &buf) { try SysVIpc.ctl(ctl, 0, info, $0.baseAddress, context: "SysV \(kind)") }
        if maxIdx < 0 { return }
        for i in 0...maxIdx {
            var d = zero
            let id: Int
            do { id = try withUnsafeMutableBytes(of: &d) { try SysVIpc.ctl(ctl, i, stat, $0.baseAddress, context: "SysV \(kind) index \(i)") } } catch let e as SystemCallError where e.errno == EINVAL || e.errno == EIDRM {
                continue  // no object at this index
            }
            try body(id, d)
        }
    }

    // MARK: shm

    struct ShmInfo { var desc: Img_IpcDescEntry; var size: UInt64; var attached: UInt64 }

    static func segments() throws -> [ShmInfo] {
        var out: [ShmInfo] = []
        try each("shm", ctl: Nr.shmctl, info: shmInfo, stat: shmStat, shmid_ds()) { id, d in
            out.append(ShmInfo(desc: desc(d.shm_perm, id: id), size: UInt64(d.shm_segsz), attached: UInt64(d.shm_nattch)))
        }
        return out
    }

    static func segmentStat(id: Int32) -> shmid_ds? {
        var d = shmid_ds()
        let r = withUnsafeMutableBytes(of: &d) { ck_syscall6(Nr.shmctl, Int(id), Int(IPC_STAT), Int(bitPattern: $0.baseAddress), 0, 0, 0) }
        return r < 0 ? nil : d
    }

    /// A segment's bytes, through a read-only attachment of this process.
    static func contents(id: Int, size: UInt64) throws -> [UInt8] {
        let at = try call("shmat", Nr.shmat, id, 0, Int(SHM_RDONLY), context: "SysV shm id \(id)")
        defer { _ = ck_syscall6(Nr.shmdt, at, 0, 0, 0, 0, 0) }
        // SHM_HUGETLB shows nowhere but in the file behind the mapping.
        if let m = try ProcReader().smaps(pid: getpid()).first(where: { $0.mapping.start == UInt64(at) }), m.vmFlags.contains("ht") {
            throw SystemCallError(call: "shmat", errno: EOPNOTSUPP, context: "SysV shm id \(id) is on hugetlbfs (SHM_HUGETLB), which cryo does not restore yet")
        }
        return Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: at), count: Int(size)))
    }

    /// Writes a segment's bytes; pages of zeros are left alone (a new segment reads as zero).
    static func fill(id: Int, data: [UInt8]) throws {
        let at = try call("shmat", Nr.shmat, id, 0, 0, context: "SysV shm id \(id)")
        defer { _ = ck_syscall6(Nr.shmdt, at, 0, 0, 0, 0, 0) }
        let dst = UnsafeMutableRawPointer(bitPattern: at)!
        data.withUnsafeBytes { src in
            var off = 0
            while off < src.count {
                let n = min(4096, src.count - off)
                if src[off..<(off + n)].contains(where: { $0 != 0 }) { dst.advanced(by: off).copyMemory(from: src.baseAddress!.advanced(by: off), byteCount: n) }
                off += n
            }
        }
    }

    // MARK: sem

    static func semSets() throws -> [(desc: Img_IpcDescEntry, values: [UInt16])] {
        var out: [(Img_IpcDescEntry, [UInt16])] = []
        try each("sem", ctl: Nr.semctl, info: semInfo, stat: semStat, semid_ds()) { id, d in
            var v = [UInt16](repeating: 0, count: Int(d.sem_nsems))
            _ = try v.withUnsafeMutableBytes { try call("semctl(GETALL)", Nr.semctl, id, 0, getAll, Int(bitPattern: $0.baseAddress), context: "SysV sem id \(id)") }
            out.append((desc(d.sem_perm, id: id), v))
        }
        return out
    }

    // MARK: msg

    /// The most bytes any queue holds: no message is bigger.
    static func biggestQueue() throws -> Int {
        var most = 0
        try each("msg", ctl: Nr.msgctl, info: msgInfo, stat: msgStat, msqid_ds()) { _, d in most = max(most, Int(d.__msg_cbytes)) }
        return most
    }

    /// `msgmax`: the namespace's (MSG_COPY copies no message above it); a message sent before
    /// it was lowered may be bigger, but none is bigger than its queue's bytes.
    static func queues(msgmax: Int) throws -> [(entry: Img_IpcMsgEntry, messages: [IpcImages.Message])] {
        var out: [(Img_IpcMsgEntry, [IpcImages.Message])] = []
        try each("msg", ctl: Nr.msgctl, info: msgInfo, stat: msgStat, msqid_ds()) { id, d in
            let size = max(msgmax, Int(d.__msg_cbytes))
            var buf = [UInt8](repeating: 0, count: 8 + size)
            var e = Img_IpcMsgEntry()
            e.desc = desc(d.msg_perm, id: id)
            e.qbytes = UInt32(d.msg_qbytes); e.qnum = UInt32(d.msg_qnum)
            var msgs: [IpcImages.Message] = []
            for i in 0..<Int(d.msg_qnum) {
                let n = try buf.withUnsafeMutableBytes {
                    try call("msgrcv(MSG_COPY)", Nr.msgrcv, id, Int(bitPattern: $0.baseAddress), size, i, Int(IPC_NOWAIT) | msgCopy,
                             context: "SysV msg id \(id) message \(i) of \(d.msg_qnum)")
                }
                let type = buf.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                msgs.append(IpcImages.Message(type: type, text: Array(buf[8..<(8 + n)])))
            }
            out.append((e, msgs))
        }
        return out
    }

    static func send(queue id: Int, _ m: IpcImages.Message) throws {
        var b = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: m.type.littleEndian) { b.replaceSubrange(0..<8, with: $0) }
        b += m.text
        _ = try b.withUnsafeBytes {
            try call("msgsnd", Nr.msgsnd, id, Int(bitPattern: $0.baseAddress), m.text.count, Int(IPC_NOWAIT), context: "SysV msg id \(id)")
        }
    }

    /// Sets owner, group and mode (and a queue's byte limit) as IPC_SET does: the only ones it can.
    static func setPerm(ctl: Int, id: Int, desc d: Img_IpcDescEntry, qbytes: UInt32? = nil, what: String) throws {
        var buf = [UInt8](repeating: 0, count: 128)
        _ = try buf.withUnsafeMutableBytes { try SysVIpc.ctl(ctl, id, Int(IPC_STAT), $0.baseAddress, context: "SysV \(what) id \(id)") }
        buf.withUnsafeMutableBytes { p in
            // struct ipc64_perm: key, uid, gid, cuid, cgid (u32), mode (u16) ...
            p.storeBytes(of: d.uid, toByteOffset: 4, as: UInt32.self)
            p.storeBytes(of: d.gid, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt16(d.mode & 0o777), toByteOffset: 20, as: UInt16.self)
            // struct msqid64_ds: msg_qbytes after perm (48), 3 times (24), cbytes, qnum (8 each).
            if let q = qbytes { p.storeBytes(of: UInt64(q), toByteOffset: 48 + 24 + 16, as: UInt64.self) }
        }
        _ = try buf.withUnsafeMutableBytes { try SysVIpc.ctl(ctl, id, Int(IPC_SET), $0.baseAddress, context: "SysV \(what) id \(id)") }
    }

    /// Runs `body` with the thread's effective ids set to an object's creator's, so the
    /// kernel records them as cuid and cgid (per-thread raw calls: glibc's change every thread).
    static func asCreator<T>(_ d: Img_IpcDescEntry, _ body: () throws -> T) throws -> T {
        if d.cuid == 0 && d.cgid == 0 { return try body() }
        let none = Int(UInt32.max)
        _ = try call("setresgid", 119, none, Int(d.cgid), none, context: "creator gid \(d.cgid) of SysV id \(d.id)")
        defer { _ = ck_syscall6(119, none, 0, none, 0, 0, 0) }
        _ = try call("setresuid", 117, none, Int(d.cuid), none, context: "creator uid \(d.cuid) of SysV id \(d.id)")
        defer { _ = ck_syscall6(117, none, 0, none, 0, 0, 0) }
        return try body()
    }
}
