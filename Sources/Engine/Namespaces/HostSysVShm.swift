import Foundation
import Glibc

/// SysV shm segments the tree has attached in an IPC namespace it does not own (the host's,
/// or one named external). The segment is not the tree's: like a file on disk it stays where
/// it is, and the restored tasks attach the same live segment again. The dump records each
/// one (ipcns-shm-ID.img of that namespace's id: id, key, owner, mode, size and its bytes at
/// dump time, which restore does not write back); restore refuses, naming the segment and its
/// user, when it is gone, is another segment now (key or size differ), or its key belongs to
/// another id. A segment removed while attached (IPC_RMID) dies with the tree: the dump
/// refuses it. Semaphores and queues of such a namespace are not the tree's (nothing shows
/// which task uses which): they are left alone, as files are. See docs/SYSV-IPC.md.
enum HostSysVShm {
    static func dump(_ attached: SysVShmAttachments, root: Int32, id: UInt32, images: ImageDirectory) throws {
        let byID = Dictionary(grouping: attached.all, by: \.id)
        guard !byID.isEmpty else { return }
        let segs = try NamespaceThread.run(in: [.ipc], of: root) { () throws -> [IpcImages.Segment] in
            try byID.keys.sorted().map { shmid in
                let user = byID[shmid]![0]
                func refuse(_ why: String) -> DumpError {
                    .unsupported(pid: user.pid, what: "SysV shm id \(shmid) attached at 0x\(String(user.start, radix: 16)) \(why)")
                }
                guard let st = SysVIpc.segmentStat(id: Int32(truncatingIfNeeded: shmid)) else {
                    throw refuse("is not in the tree's IPC namespace (IPC_STAT: \(String(cString: strerror(errno))))")
                }
                let d = SysVIpc.desc(st.shm_perm, id: Int(shmid))
                guard d.mode & SysVIpc.shmDest == 0 else {
                    throw refuse("was removed (IPC_RMID) in an IPC namespace that is not the tree's own: it dies with the tree and cryo cannot make it again there")
                }
                var e = Img_IpcShmEntry()
                e.desc = d; e.size = UInt64(st.shm_segsz); e.inPagemaps = false
                return IpcImages.Segment(entry: e, data: try SysVIpc.contents(id: Int(shmid), size: e.size))
            }
        }
        try IpcImages.writeShm(segs, id: Int(id), images: images)
    }

    /// Restore, before any task exists: every attached segment is there, and is the same.
    static func check(_ tasks: [(pid: Int32, mm: Img_MmEntry)], id: UInt32, images: ImageDirectory) throws {
        let users = tasks.flatMap { t in t.mm.vmas.filter { $0.status & VmaStatus.sysvipc != 0 }.map { (t.pid, $0) } }
        guard !users.isEmpty else { return }
        guard images.exists(.ipcnsShm, Int(id)) else {
            throw RestoreError.unsupported("pid \(users[0].0) attaches SysV shm id \(users[0].1.shmid), but \(ImageKind.ipcnsShm.fileName(Int(id))) is missing")
        }
        let dumped = Dictionary(try IpcImages.readShm(id: Int(id), images: images).map { (UInt64($0.entry.desc.id), $0.entry) }, uniquingKeysWith: { a, _ in a })
        // cryo's own IPC namespace: the one the restored tree lives in.
        let keys = try SysVIpc.segments()
        do {
            for (pid, v) in users {
                let what = "SysV shm id \(v.shmid) attached by pid \(pid) at 0x\(String(v.start, radix: 16))"
                guard let e = dumped[v.shmid] else {
                    throw RestoreError.unsupported("\(what): not in \(ImageKind.ipcnsShm.fileName(Int(id)))")
                }
                let key = "key 0x\(String(e.desc.key, radix: 16))"
                guard let st = SysVIpc.segmentStat(id: Int32(truncatingIfNeeded: v.shmid)) else {
                    if e.desc.key != 0, let other = keys.first(where: { $0.desc.key == e.desc.key }) {
                        throw RestoreError.unsupported("\(what), \(key): gone; its key now belongs to id \(other.desc.id); cryo does not make segments in an IPC namespace the tree does not own")
                    }
                    throw RestoreError.unsupported("\(what), \(key), \(e.size) bytes: no longer exists on this machine; cryo does not make segments in an IPC namespace the tree does not own")
                }
                let now = SysVIpc.desc(st.shm_perm, id: Int(v.shmid))
                guard now.key == e.desc.key, UInt64(st.shm_segsz) == e.size, now.mode & SysVIpc.shmDest == 0 else {
                    throw RestoreError.unsupported("\(what): dumped as \(key), \(e.size) bytes; that id is now key 0x\(String(now.key, radix: 16)), \(st.shm_segsz) bytes\(now.mode & SysVIpc.shmDest != 0 ? ", removed" : ""): another segment")
                }
            }
        }
    }
}
