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
