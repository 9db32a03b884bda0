import Glibc

/// Which processes share their mm, fd table, fs or signal handlers (CLONE_VM, CLONE_FILES,
/// CLONE_FS, CLONE_SIGHAND without CLONE_THREAD). kcmp tells; a table's id is the pid of the
/// first process in tree order that has it, so restore knows whom to share it with.
enum SharedTables {
    static let kcmpVM: Int32 = 1, kcmpFiles: Int32 = 2, kcmpFS: Int32 = 3, kcmpSighand: Int32 = 4

    static func ids(of pids: [Int32]) throws -> [Int32: Img_TaskKobjIdsEntry] {
        var out: [Int32: Img_TaskKobjIdsEntry] = [:]
        for (i, pid) in pids.enumerated() {
            func owner(_ type: Int32) throws -> UInt32 {
                for other in pids[..<i] where try Sys.kcmp(other, pid, type: type, 0, 0) == 0 { return try owner(of: other, type) }
                return UInt32(pid)
            }
            func owner(of other: Int32, _ type: Int32) throws -> UInt32 {
                let e = out[other]!
                switch type {
                case kcmpVM: return e.vmID
                case kcmpFiles: return e.filesID
                case kcmpFS: return e.fsID
                default: return e.sighandID
                }
            }
            var e = Img_TaskKobjIdsEntry()
            e.vmID = try owner(kcmpVM)
            e.filesID = try owner(kcmpFiles)
            e.fsID = try owner(kcmpFS)
            e.sighandID = try owner(kcmpSighand)
            if e.vmID != UInt32(pid) {
                throw DumpError.unsupported(pid: pid, what: "an address space shared with process \(e.vmID) (CLONE_VM without CLONE_THREAD)")
            }
            out[pid] = e
        }
        return out
    }
}
