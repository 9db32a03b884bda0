/// CRIU's page-server wire format (criu/page-xfer.c), so `criu dump --page-server` can send to
/// `cryo page-server` and the reverse. Every message starts with one header, `struct
/// page_server_iov` in host byte order (x86_64: little endian). CRIU 4.2 (commit 7e0da4d9,
/// "pagemap: use unsigned long for page counts") widened nr_pages to u64, which makes the
/// struct 32 bytes with 4 bytes of padding after cmd; that is the layout spoken here:
///
///     u32 cmd        low 16 bits: the command; high 16 bits: pagemap flags (PE_*) for ADD_F
///     u32 (padding, sent as 0, ignored)
///     u64 nr_pages
///     u64 vaddr
///     u64 dst_id     (image id << 8) | type (1: pagemap-ID.img of a task, 2: shmem pagemap);
///                    for GET the bare pid (criu/uffd.c sends lpi->pid unencoded)
///
/// Pre-copy (dump side -> server): OPEN2 (the server answers ONE BYTE: 1 if its parent
/// snapshot has that image), ADD_F (header, then nr_pages*4096 bytes when the flags hold
/// PE_PRESENT; PE_PARENT and lazy-only entries carry no bytes), ADD (= ADD_F PE_PRESENT), HOLE
/// (= ADD_F PE_PARENT), OPEN (OPEN2 without answer), PARENT (answers an s32: 1 if the parent
/// has that image, else 0), CLOSE 0x1023 / FORCE_CLOSE 0x1024 (answers an s32 status, 0 when
/// everything is written; then the server waits for the client to close). The server writes
/// each image's pagemap head itself, naming a pages file it numbers (CRIU starts at 0x10001).
/// Post-copy (restore side -> dump-side server): GET (nr_pages at vaddr of pid); the server
/// answers with an ADD_F|PE_PRESENT header echoing vaddr and dst_id with the pages it sends
/// (fewer than asked when the run ends; 0 if it has none), then the bytes.
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
    public static let size = 32
    public static let cmdBits: UInt32 = 16
    public static let typeBits: UInt64 = 8

    public var rawCmd: UInt32
    public var nrPages: UInt64
    public var vaddr: UInt64
    public var dstID: UInt64

    public init(rawCmd: UInt32, nrPages: UInt64, vaddr: UInt64, dstID: UInt64) {
        self.rawCmd = rawCmd; self.nrPages = nrPages; self.vaddr = vaddr; self.dstID = dstID
    }

    public init(_ cmd: PageServerCommand, flags: UInt32 = 0, nrPages: UInt64 = 0, vaddr: UInt64 = 0,
                type: PageServerImageType = .pagemap, id: UInt64 = 0) {
        self.init(rawCmd: cmd.rawValue | (flags << Self.cmdBits), nrPages: nrPages, vaddr: vaddr,
                  dstID: Self.encodeID(type: type, id: id))
    }

    /// A post-copy request: GET's dst_id is the bare pid.
    public static func get(pid: UInt64, vaddr: UInt64, nrPages: UInt64) -> PageServerHeader {
        PageServerHeader(rawCmd: PageServerCommand.get.rawValue, nrPages: nrPages, vaddr: vaddr, dstID: pid)
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
        put(rawCmd); put(UInt32(0)); put(nrPages); put(vaddr); put(dstID)
        return b
    }

    /// Decodes exactly 32 bytes; nil otherwise. Says nothing about validity: see `PageServerLimits`.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.size else { return nil }
        let a = Array(bytes)
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for k in 0..<MemoryLayout<T>.size { v |= T(a[at + k]) << (8 * k) }
            return v
        }
        self.init(rawCmd: get(0, UInt32.self), nrPages: get(8, UInt64.self), vaddr: get(16, UInt64.self), dstID: get(24, UInt64.self))
    }
}

/// What a page server accepts before it trusts a header.
public enum PageServerLimits {
    /// Largest ADD_F/GET run in one header (CRIU sends at most a pipe's worth; 1 GiB is generous).
    public static let maxPagesPerHeader: UInt64 = 1 << 18
    /// PE_* bits an ADD_F may carry: PE_PARENT, PE_LAZY, PE_PRESENT, and cryo's cowParent (1 << 8).
    public static let knownFlags: UInt32 = 0x107
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
            if cmd == .get {
                guard h.dstID < maxImageID else { return "pid \(h.dstID) out of range" }
            } else {
                guard h.imageType != nil else { return "bad image type \(h.dstID & 0xff) in dst_id 0x\(String(h.dstID, radix: 16))" }
                guard h.imageID < maxImageID else { return "image id \(h.imageID) out of range" }
            }
            if cmd == .addF {
                guard h.flags & ~knownFlags == 0 else { return "unknown pagemap flags 0x\(String(h.flags, radix: 16))" }
                guard h.flags & 0x5 != 0x5 else { return "pages both in the parent and present" }
            }
            guard h.nrPages > 0 else { return "no pages" }
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
