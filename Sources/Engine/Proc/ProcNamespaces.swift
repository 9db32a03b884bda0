import Glibc

extension ProcReader {
    /// The inode of a task's namespace of `kind` ("net", "pid"...), nil once it is gone.
    public func namespaceInode(pid: Int32, _ kind: String) -> UInt64? {
        try? namespaceInode(pid: pid, kind: kind)
    }

    /// Every process the machine shows now (numbered entries of /proc).
    public func allPids() -> [Int32] {
        guard let d = opendir(root) else { return [] }
        defer { closedir(d) }
        var out: [Int32] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let p = Int32(name) { out.append(p) }
        }
        return out
    }
}
