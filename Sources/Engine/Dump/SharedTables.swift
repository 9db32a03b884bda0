import Glibc

/// Which processes share their mm, fd table, fs or signal handlers (CLONE_VM, CLONE_FILES,
/// CLONE_FS, CLONE_SIGHAND without CLONE_THREAD). kcmp tells; a table's id is the pid of the
/// first process in tree order that has it, so restore knows whom to share it with.
enum SharedTables {
    static let kcmpVM: Int32 = 1, kcmpFiles: Int32 = 2, kcmpFS: Int32 = 3, kcmpSighand: Int32 = 4

    static func ids(of pids: [Int32]) throws -> [Int32: Img_TaskKobjIdsEntry] {
        // kcmp orders objects as well as comparing them, so sorting by it puts the processes
        // sharing a table next to each other: n log n calls instead of n².
        func owners(_ type: Int32) throws -> [Int32: UInt32] {
            var failure: Error?
            let sorted = pids.enumerated().sorted { a, b in
                if failure != nil { return a.offset < b.offset }
                do {
                    let r = try Sys.kcmp(a.element, b.element, type: type, 0, 0)
                    return r == 0 ? a.offset < b.offset : r == 1
                } catch { failure = error; return a.offset < b.offset }
            }
            if let failure { throw failure }
            var out: [Int32: UInt32] = [:]
            var prev: Int32? = nil
            var group: [(Int32, Int)] = []
            func close() {
                // The table's id is its first holder in tree order.
                if let first = group.min(by: { $0.1 < $1.1 }) { for (p, _) in group { out[p] = UInt32(first.0) } }
                group = []
            }
            for (order, pid) in sorted {
                if let p = prev, try Sys.kcmp(p, pid, type: type, 0, 0) == 0 {
                    group.append((pid, order))
                } else {
                    close()
                    group = [(pid, order)]
                }
                prev = pid
            }
            close()
            return out
        }
        let vm = try owners(kcmpVM), files = try owners(kcmpFiles), fs = try owners(kcmpFS), sighand = try owners(kcmpSighand)
        var out: [Int32: Img_TaskKobjIdsEntry] = [:]
        for pid in pids {
            var e = Img_TaskKobjIdsEntry()
            e.vmID = vm[pid]!; e.filesID = files[pid]!; e.fsID = fs[pid]!; e.sighandID = sighand[pid]!
            if e.vmID != UInt32(pid) {
                throw DumpError.unsupported(pid: pid, what: "an address space shared with process \(e.vmID) (CLONE_VM without CLONE_THREAD)")
            }
            out[pid] = e
        }
        return out
    }
}
