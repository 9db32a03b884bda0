/// CRIU's page-server wire format (criu/page-xfer.c), so `criu dump --page-server` can send to
/// `cryo page-server` and the reverse. Every message starts with one 24-byte header in host
/// byte order (x86_64: little endian), as CRIU sends it:
///
///     u32 cmd        low 16 bits: the command; high 16 bits: pagemap flags (PE_*) for ADD_F
///     u32 nr_pages
///     u64 vaddr
///     u64 dst_id     (image id << 8) | type (1: pagemap-ID.img of a task, 2: shmem pagemap)
///
/// Pre-copy (dump side -> server): OPEN2 (dst_id; the server answers one u32: 1 if it has a
/// parent snapshot for that image), then ADD_F (header, then nr_pages*4096 bytes unless the
/// flags say in-parent/lazy), PARENT (ask if a parent exists: answers u32), CLOSE-like
/// FLUSH / FLUSH_N_CLOSE (server answers one u32 0 when everything is on disk).
/// Post-copy (restore side -> dump-side server): GET (nr_pages at vaddr of dst_id); the server
/// answers with an ADD_F header for what it sends (nr_pages 0 if it has none), then the bytes.
public enum PageServerCommand: UInt32, Sendable, CaseIterable {
    case add = 1
    case hole = 2
    case open = 3
    case open2 = 4
    case parent = 5
    case addF = 6
    case get = 7
    case flush = 0x1023
    case flushAndClose = 0x1024
}

public enum PageServerImageType: UInt8, Sendable {
    case pagemap = 1
    case shmemPagemap = 2
}

public struct PageServerHeader: Sendable, Equatable {
    public static let size = 24
    public static let cmdBits: UInt32 = 16
    public static let typeBits: UInt64 = 8

    public var rawCmd: UInt32
    public var nrPages: UInt32
    public var vaddr: UInt64
    public var dstID: UInt64

    public init(rawCmd: UInt32, nrPages: UInt32, vaddr: UInt64, dstID: UInt64) {
        self.rawCmd = rawCmd; self.nrPages = nrPages; self.vaddr = vaddr; self.dstID = dstID
    }

    public init(_ cmd: PageServerCommand, flags: UInt32 = 0, nrPages: UInt32 = 0, vaddr: UInt64 = 0,
                type: PageServerImageType = .pagemap, id: UInt64 = 0) {
        self.init(rawCmd: cmd.rawValue | (flags << Self.cmdBits), nrPages: nrPages, vaddr: vaddr,
                  dstID: Self.encodeID(type: type, id: id))
    }

    /// nil for a command number CRIU does not define.
    public var command: PageServerCommand? { PageServerCommand(rawValue: rawCmd & ((1 << Self.cmdBits) - 1)) }
    /// PE_* pagemap flags carried by ADD_F (PE_PARENT 1<<0, PE_LAZY 1<<1, PE_PRESENT 1<<2).
    public var flags: UInt32 { rawCmd >> Self.cmdBits }
    public var imageType: PageServerImageType? { PageServerImageType(rawValue: UInt8(dstID & ((1 << Self.typeBits) - 1))) }
    public var imageID: UInt64 { dstID >> Self.typeBits }

    public static func encodeID(type: PageServerImageType, id: UInt64) -> UInt64 { id << typeBits | UInt64(type.rawValue) }

    public var bytes: [UInt8] {
        var b = [UInt8](); b.reserveCapacity(Self.size)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
        put(rawCmd); put(nrPages); put(vaddr); put(dstID)
        return b
    }

    /// Decodes exactly 24 bytes; nil otherwise. Says nothing about validity: see `PageServerLimits`.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.size else { return nil }
        let a = Array(bytes)
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for k in 0..<MemoryLayout<T>.size { v |= T(a[at + k]) << (8 * k) }
            return v
        }
        self.init(rawCmd: get(0, UInt32.self), nrPages: get(4, UInt32.self), vaddr: get(8, UInt64.self), dstID: get(16, UInt64.self))
    }
}

/// What a page server accepts before it trusts a header.
public enum PageServerLimits {
    /// Largest ADD_F/GET run in one header (CRIU sends at most a pipe's worth; 1 GiB is generous).
    public static let maxPagesPerHeader: UInt32 = 1 << 18
    /// x86_64 user space ends here (47-bit addresses, 4-level paging; 57-bit with 5-level).
    public static let userSpaceEnd: UInt64 = 1 << 57
    /// Image ids are pids (pagemap) or shmem ids; both fit well within this.
    public static let maxImageID: UInt64 = 1 << 32

    /// Why the header cannot be accepted, or nil if it is well-formed.
    public static func problem(_ h: PageServerHeader) -> String? {
        guard let cmd = h.command else { return "unknown command 0x\(String(h.rawCmd, radix: 16))" }
        switch cmd {
        case .flush, .flushAndClose: return nil
        case .open, .open2, .parent:
            guard h.imageType != nil else { return "bad image type \(h.dstID & 0xff) in dst_id 0x\(String(h.dstID, radix: 16))" }
            guard h.imageID < maxImageID else { return "image id \(h.imageID) out of range" }
            return nil
        case .add, .addF, .hole, .get:
            guard h.imageType != nil else { return "bad image type \(h.dstID & 0xff) in dst_id 0x\(String(h.dstID, radix: 16))" }
            guard h.imageID < maxImageID else { return "image id \(h.imageID) out of range" }
            guard h.nrPages <= maxPagesPerHeader else { return "\(h.nrPages) pages in one header (at most \(maxPagesPerHeader))" }
            guard h.vaddr % UInt64(imagePageSize) == 0 else { return "vaddr 0x\(String(h.vaddr, radix: 16)) is not page-aligned" }
            let end = h.vaddr.addingReportingOverflow(UInt64(h.nrPages) * UInt64(imagePageSize))
            guard !end.overflow, end.partialValue <= userSpaceEnd else {
                return "range 0x\(String(h.vaddr, radix: 16)) + \(h.nrPages) pages leaves user space"
            }
            return nil
        }
    }
}
