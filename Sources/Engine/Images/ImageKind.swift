/// Every image file cryo reads or writes: its name and its magic numbers, as CRIU defines them.
public enum ImageKind: String, CaseIterable, Sendable {
    case inventory, pstree, core, ids, mm, pagemap, pages, files, fdinfo, fs, sigacts

    public static let commonMagic: UInt32 = 0x5456_4319
    public static let serviceMagic: UInt32 = 0x5510_5940

    /// The per-image magic (nil for raw images, which have no header).
    public var magic: UInt32? {
        switch self {
        case .inventory: return 0x5831_3116
        case .pstree: return 0x5027_3030
        case .core: return 0x5505_3847
        case .ids: return 0x5443_2030
        case .mm: return 0x5749_2820
        case .pagemap: return 0x5608_4025
        case .pages: return nil
        case .files: return 0x5630_3138
        case .fdinfo: return 0x5621_3732
        case .fs: return 0x5140_3912
        case .sigacts: return 0x5534_4201
        }
    }

    /// The magic written before the image's own, if any: inventory has none, like CRIU's.
    public var firstMagic: UInt32? {
        switch self {
        case .inventory, .pages: return nil
        default: return ImageKind.commonMagic
        }
    }

    /// File name for this kind; `id` is the pid, the pages id or the files id.
    public func fileName(_ id: Int? = nil) -> String {
        switch self {
        case .inventory, .pstree, .files: return "\(rawValue).img"
        default: return "\(rawValue)-\(id ?? 0).img"
        }
    }
}
