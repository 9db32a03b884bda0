// Typed values read from /proc. The parsers live beside this file (one per /proc file) and
// are the only code in cryo that reads /proc text; everything else calls them.

public struct ProcMapping: Equatable, Sendable, Hashable {
    public var start: UInt64
    public var end: UInt64
    public var readable: Bool
    public var writable: Bool
    public var executable: Bool
    public var shared: Bool          // 's' vs 'p'
    public var offset: UInt64
    public var devMajor: UInt32
    public var devMinor: UInt32
    public var inode: UInt64
    public var path: String          // "" for anonymous; "[heap]", "[stack]", "[vdso]", "/lib/... (deleted)" as the kernel shows it
    public init(start: UInt64, end: UInt64, readable: Bool, writable: Bool, executable: Bool, shared: Bool,
                offset: UInt64, devMajor: UInt32, devMinor: UInt32, inode: UInt64, path: String) {
        self.start = start; self.end = end; self.readable = readable; self.writable = writable
        self.executable = executable; self.shared = shared; self.offset = offset
        self.devMajor = devMajor; self.devMinor = devMinor; self.inode = inode; self.path = path
    }
    public var size: UInt64 { end - start }
    /// "rwxp" form, as /proc shows it.
    public var permString: String {
        (readable ? "r" : "-") + (writable ? "w" : "-") + (executable ? "x" : "-") + (shared ? "s" : "p")
    }
}

extension ProcMapping {
    /// The kernel appends " (deleted)" to the path of an unlinked file; the path keeps it so
    /// nobody mistakes the mapping for the live file of the same name.
    public var isDeleted: Bool { path.hasPrefix("/") && path.hasSuffix(" (deleted)") }
    public var pathWithoutDeleted: String { isDeleted ? String(path.dropLast(10)) : path }
    /// Not backed by a file: plain anonymous memory, [heap], [stack], "[anon:name]".
    public var isAnonymous: Bool { inode == 0 && !path.hasPrefix("/") }
    public var isFile: Bool { path.hasPrefix("/") }
    public var isHeap: Bool { path == "[heap]" }
    public var isStack: Bool { path == "[stack]" }
    /// Kernel-provided areas that are never dumped as memory.
    public var isSpecial: Bool { ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]"].contains(path) }
    /// The maps line as the kernel would print it (without column padding).
    public var line: String {
        "\(String(start, radix: 16))-\(String(end, radix: 16)) \(permString) \(hex8(offset)) "
            + "\(hex2(UInt64(devMajor))):\(hex2(UInt64(devMinor))) \(inode)" + (path.isEmpty ? "" : " " + path)
    }
    private func hex8(_ v: UInt64) -> String { let s = String(v, radix: 16); return String(repeating: "0", count: max(0, 8 - s.count)) + s }
    private func hex2(_ v: UInt64) -> String { let s = String(v, radix: 16); return s.count < 2 ? "0" + s : s }
}
