extension ImageDirectory {
    /// Cross-file checks a restore relies on: the tree is well formed (unique pids, threads that
    /// include the pid, parents inside the tree), every thread has a core image, each live
    /// process has an mm and a pagemap whose entries lie inside its VMAs and whose data pages
    /// add up to its pages file exactly, in-parent pages have a parent to come from, and every
    /// fd names a file of files.img. The first problem found is thrown.
    public func validateConsistency() throws {
        _ = try readOne(.inventory, as: Img_InventoryEntry.self)
        let pstreeFile = filePath(.pstree)
        let tree = try readWithOffsets(.pstree, as: Img_PstreeEntry.self)
        guard !tree.isEmpty else { throw ImageError.inconsistent(file: pstreeFile, offset: 8, reason: "no processes") }

        var pids = Set<UInt32>(), tids = Set<UInt32>()
        for (at, p) in tree {
            guard p.pid != 0 else { throw ImageError.inconsistent(file: pstreeFile, offset: at, reason: "pid 0") }
            guard pids.insert(p.pid).inserted else {
                throw ImageError.inconsistent(file: pstreeFile, offset: at, reason: "pid \(p.pid) appears twice")
            }
        }
        for (i, (at, p)) in tree.enumerated() {
            guard p.threads.contains(p.pid) else {
                throw ImageError.inconsistent(file: pstreeFile, offset: at, reason: "pid \(p.pid): threads \(p.threads) do not include the pid")
            }
            // The first entry is the root, with ppid 0 as CRIU writes it (crit relies on it);
            // every other process hangs below a process of the tree.
            guard i != 0 || p.ppid == 0 else {
                throw ImageError.inconsistent(file: pstreeFile, offset: at, reason: "root pid \(p.pid) has ppid \(p.ppid), not 0")
            }
            guard i == 0 || pids.contains(p.ppid) else {
                throw ImageError.inconsistent(file: pstreeFile, offset: at, reason: "pid \(p.pid): parent \(p.ppid) is not in the tree")
            }
            for t in p.threads {
                guard t != 0, tids.insert(t).inserted else {
                    throw ImageError.inconsistent(file: pstreeFile, offset: at, reason: "pid \(p.pid): thread \(t) is zero or listed twice")
                }
                _ = try readOne(.core, id: Int(t), as: Img_CoreEntry.self)
            }
        }

        let files = try fileIDs()
        var pagesIDs: [UInt32: Int] = [:]
        var needsParent: (file: String, offset: Int)?
        for (_, p) in tree {
            let pid = Int(p.pid)
            let coreFile = filePath(.core, pid)
            let core = try readOne(.core, id: pid, as: Img_CoreEntry.self)
            guard core.hasTc else {
                throw ImageError.inconsistent(file: coreFile, offset: 8, reason: "the main thread's core has no task state (tc)")
            }
            let state = core.tc.taskState
            if state == TaskState.zombie.rawValue || state == TaskState.dead.rawValue { continue }

            let mm = try readOne(.mm, id: pid, as: Img_MmEntry.self)
            let map = try pageMap(pid: pid)
            try checkInsideVMAs(map, mm: mm, mmFile: filePath(.mm, pid))
            if let other = pagesIDs.updateValue(pid, forKey: map.pagesID) {
                throw ImageError.inconsistent(file: map.file, offset: 8, reason: "pages id \(map.pagesID) is also used by pid \(other)")
            }
            if needsParent == nil, let e = map.entries.first(where: { $0.flags.contains(.parent) }) {
                needsParent = (map.file, e.frameOffset)
            }
            let pagesSize = try self.pagesSize(id: map.pagesID)
            guard pagesSize == map.dataBytes else {
                let file = filePath(.pages, Int(map.pagesID))
                throw ImageError.inconsistent(file: file, offset: min(pagesSize, map.dataBytes),
                                              reason: "\(map.file) lists \(map.dataBytes / imagePageSize) pages (\(map.dataBytes) bytes), the file has \(pagesSize)")
            }

            if exists(.ids, pid) {
                let ids = try readOne(.ids, id: pid, as: Img_TaskKobjIdsEntry.self)
                try checkFdinfo(filesID: ids.filesID, files: files)
            }
        }
        if let (file, offset) = needsParent {
            guard try parent() != nil else {
                throw ImageError.inconsistent(file: file, offset: offset, reason: "pages are marked in the parent, but there is no parent snapshot")
            }
            _ = try chain()
        }
    }

    /// Ids of files.img's entries; empty when there is no files.img (a tree without fds).
    private func fileIDs() throws -> Set<UInt32> {
        guard exists(.files) else { return [] }
        var ids = Set<UInt32>()
        for (at, f) in try readWithOffsets(.files, as: Img_FileEntry.self) {
            guard ids.insert(f.id).inserted else {
                throw ImageError.inconsistent(file: filePath(.files), offset: at, reason: "file id \(f.id) appears twice")
            }
        }
        return ids
    }

    private func checkFdinfo(filesID: UInt32, files: Set<UInt32>) throws {
        let id = Int(filesID)
        guard exists(.fdinfo, id) else { return }
        var fds = Set<UInt32>()
        for (at, fd) in try readWithOffsets(.fdinfo, id: id, as: Img_FdinfoEntry.self) {
            guard fds.insert(fd.fd).inserted else {
                throw ImageError.inconsistent(file: filePath(.fdinfo, id), offset: at, reason: "fd \(fd.fd) appears twice")
            }
            guard files.contains(fd.id) else {
                throw ImageError.inconsistent(file: filePath(.fdinfo, id), offset: at, reason: "fd \(fd.fd) names file id \(fd.id), which files.img does not have")
            }
        }
    }

    /// Every pagemap entry must lie inside the task's VMAs (adjacent VMAs may share an entry).
    private func checkInsideVMAs(_ map: PageMap, mm: Img_MmEntry, mmFile: String) throws {
        var ranges: [(start: UInt64, end: UInt64)] = []
        for v in mm.vmas.sorted(by: { $0.start < $1.start }) {
            guard v.start < v.end else {
                throw ImageError.inconsistent(file: mmFile, offset: 8, reason: "VMA 0x\(String(v.start, radix: 16))-0x\(String(v.end, radix: 16)) is empty or reversed")
            }
            if let last = ranges.last, last.end >= v.start {
                ranges[ranges.count - 1].end = max(last.end, v.end)
            } else {
                ranges.append((v.start, v.end))
            }
        }
        var i = 0
        for e in map.entries {
            while i < ranges.count && ranges[i].end <= e.vaddr { i += 1 }
            guard i < ranges.count, ranges[i].start <= e.vaddr, e.end <= ranges[i].end else {
                throw ImageError.inconsistent(file: map.file, offset: e.frameOffset,
                                              reason: "pages 0x\(String(e.vaddr, radix: 16))-0x\(String(e.end, radix: 16)) are outside every VMA of \(mmFile)")
            }
        }
    }
}
