import Glibc

/// A task being rebuilt from images: the injection channel plus the helpers every restore
/// step needs (strings and structs travel through the scratch page).
final class RestoreTarget {
    /// The task as cryo sees it (ptrace, /proc).
    let pid: Int32
    /// Its pid in the images: inside the tree's pid namespace (the same on the host).
    let vpid: Int32
    let remote: Remote
    var scratch: UInt64 = 0
    static let scratchSize = 16 * 1024

    init(pid: Int32, remote: Remote, vpid: Int32? = nil) { self.pid = pid; self.remote = remote; self.vpid = vpid ?? pid }

    /// Copies `bytes` into the scratch area at `offset` and returns their address there.
    func put(_ bytes: [UInt8], offset: Int = 0) throws -> UInt64 {
        precondition(offset + bytes.count <= RestoreTarget.scratchSize, "scratch overflow")
        try remote.writeMemory(bytes, at: scratch + UInt64(offset))
        return scratch + UInt64(offset)
    }

    func put(string: String, offset: Int = 0) throws -> UInt64 {
        let b = Array(string.utf8) + [0]
        guard b.count < 4096 else { throw RestoreError.unsupported("path longer than 4095 bytes: \(string.prefix(64))...") }
        return try put(b, offset: offset)
    }

    /// open(2) inside the task; returns the fd it got there.
    func openFile(_ path: String, flags: Int32) throws -> Int32 {
        let p = try put(string: path)
        do {
            return Int32(truncatingIfNeeded: try remote.syscall(.open, p, UInt64(UInt32(bitPattern: flags)), 0))
        } catch RemoteError.syscallFailed(_, _, let e) {
            throw RestoreError.fileMissing(path: path, errno: e)
        }
    }
}
