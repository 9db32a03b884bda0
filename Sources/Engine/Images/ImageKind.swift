import SwiftProtobuf

/// Every image file cryo reads or writes: its name, its magic numbers and its message types,
/// as CRIU defines them (magics checked against pycriu's magic.py by the tests).
public enum ImageKind: String, CaseIterable, Sendable {
    case inventory, pstree, core, ids, mm, pagemap, pages, files, fdinfo, fs, sigacts
    // Deleted-but-open files: the remap table, and one ghost image (entry + raw bytes) per file.
    case remapFpath, ghostFile
    /// Pages of a shared anonymous memory object, written once for all its users.
    case shmemPagemap
    // Per-task images older CRIU versions wrote (3.17 keeps this state in core-PID.img);
    // listed so that images from such a CRIU can still be read.
    case itimers, posixTimers, creds, rlimit, regFiles
    // State of fds that lives outside files.img: data in pipes and FIFOs, packets queued to
    // sockets (each entry followed by its raw bytes), memfd inodes and their contents.
    case pipesData, fifoData, skQueues, memfdInode
    /// One established TCP connection (named by its socket inode, in hex as CRIU names it):
    /// its repair-mode state, then the bytes of its receive and send queues.
    case tcpStream
    /// Security state of the whole dump (docs/SECURITY-STATE.md): every thread's seccomp
    /// filter chain, and the cgroups the tree lives in.
    case seccomp, cgroup
    /// A network namespace (by its id): links, its sysctls, and iproute2's `ip addr save`,
    /// `ip -4 route save` and `ip -6 route save` streams (raw, as CRIU keeps them).
    case netdev, netns, ifaddr, route, route6
    /// File locks held by the tree (flock, POSIX, OFD, leases), taken with dump --file-locks.
    case fileLocks
    /// Contents of a namespace of the tree's own, named by CRIU's ns id: hostname and domain.
    case utsns
    /// A mount namespace's mounts (CRIU's mountpoints-ID.img).
    case mnts
    /// Ptys: one entry per end, its termios, window size, index and session (tty-info.img).
    case ttyInfo
    /// Bytes queued in a pty, each direction read from one end (CRIU's tty-data.img).
    case ttyData
    /// An IPC namespace's limits and SysV objects: shm segments with their bytes, semaphore
    /// sets with their values, message queues with their messages (docs/SYSV-IPC.md).
    case ipcnsVar, ipcnsShm, ipcnsSem, ipcnsMsg
    /// A user namespace's uid and gid maps; a time namespace's clock offsets (by ns id).
    case userns, timens

    public static let commonMagic: UInt32 = 0x5456_4319
    /// First magic of CRIU's stats and irmap-cache images; none of cryo's kinds uses it.
    public static let serviceMagic: UInt32 = 0x5510_5940

    /// The per-image magic (nil for raw images, which have no header).
    public var magic: UInt32? {
        switch self {
        case .inventory: return 0x5831_3116
        case .pstree: return 0x5027_3030
        case .core: return 0x5505_3847
        case .ids: return 0x5443_2030
        case .mm: return 0x5749_2820
        case .pagemap, .shmemPagemap: return 0x5608_4025
        case .pages: return nil
        case .files: return 0x5630_3138
        case .fdinfo: return 0x5621_3732
        case .fs: return 0x5140_3912
        case .sigacts: return 0x5534_4201
        case .remapFpath: return 0x5913_3954
        case .ghostFile: return 0x5258_3605
        case .itimers: return 0x5746_4056
        case .posixTimers: return 0x5260_3957
        case .creds: return 0x5402_3547
        case .rlimit: return 0x5711_3925
        case .regFiles: return 0x5036_3636
        case .pipesData: return 0x5645_3709
        case .fifoData: return 0x5933_3054
        case .skQueues: return 0x5626_4026
        case .memfdInode: return 0x4845_3499
        case .tcpStream: return 0x5146_5506
        case .seccomp: return 0x6441_3049
        case .cgroup: return 0x5938_3330
        case .netdev: return 0x5737_3951
        case .netns: return 0x5593_3752
        case .fileLocks: return 0x5432_3616
        case .ifaddr, .route, .route6: return nil
        case .utsns: return 0x5447_3203
        case .userns: return 0x5547_4906
        case .timens: return 0x4311_4433
        case .mnts: return 0x5556_3928
        case .ttyInfo: return 0x5945_3036
        case .ttyData: return 0x5941_3026
        case .ipcnsVar: return 0x5311_5007
        case .ipcnsShm: return 0x4628_3044
        case .ipcnsSem: return 0x5957_3019
        case .ipcnsMsg: return 0x5545_3737
        }
    }

    /// The magic written before the image's own: inventory has none (CRIU's img_write_magic
    /// skips it), raw images have no header at all.
    public var firstMagic: UInt32? {
        switch self {
        case .inventory, .pages, .ifaddr, .route, .route6: return nil
        default: return ImageKind.commonMagic
        }
    }

    /// CRIU's name for the magic, as crit prints it.
    public var criuName: String {
        switch self {
        case .inventory: return "INVENTORY"
        case .pstree: return "PSTREE"
        case .core: return "CORE"
        case .ids: return "IDS"
        case .mm: return "MM"
        case .pagemap, .shmemPagemap: return "PAGEMAP"
        case .pages: return "PAGES"
        case .files: return "FILES"
        case .fdinfo: return "FDINFO"
        case .fs: return "FS"
        case .sigacts: return "SIGACT"
        case .remapFpath: return "REMAP_FPATH"
        case .ghostFile: return "GHOST_FILE"
        case .itimers: return "ITIMERS"
        case .posixTimers: return "POSIX_TIMERS"
        case .creds: return "CREDS"
        case .rlimit: return "RLIMIT"
        case .regFiles: return "REG_FILES"
        case .pipesData: return "PIPES_DATA"
        case .fifoData: return "FIFO_DATA"
        case .skQueues: return "SK_QUEUES"
        case .memfdInode: return "MEMFD_INODE"
        case .tcpStream: return "TCP_STREAM"
        case .seccomp: return "SECCOMP"
        case .cgroup: return "CGROUP"
        case .netdev: return "NETDEV"
        case .netns: return "NETNS"
        case .ifaddr: return "IFADDR"
        case .route: return "ROUTE"
        case .route6: return "ROUTE6"
        case .fileLocks: return "FILE_LOCKS"
        case .utsns: return "UTSNS"
        case .userns: return "USERNS"
        case .timens: return "TIMENS"
        case .mnts: return "MNTS"
        case .ttyInfo: return "TTY_INFO"
        case .ttyData: return "TTY_DATA"
        case .ipcnsVar: return "IPC_VAR"
        case .ipcnsShm: return "IPCNS_SHM"
        case .ipcnsSem: return "IPCNS_SEM"
        case .ipcnsMsg: return "IPCNS_MSG"
        }
    }

    /// File name prefix; per-id images are "<stem>-<id>.img".
    public var stem: String {
        switch self {
        case .posixTimers: return "posix-timers"
        case .regFiles: return "reg-files"
        case .remapFpath: return "remap-fpath"
        case .ghostFile: return "ghost-file"
        case .pipesData: return "pipes-data"
        case .fifoData: return "fifo-data"
        case .skQueues: return "sk-queues"
        case .memfdInode: return "memfd"
        case .tcpStream: return "tcp-stream"
        case .shmemPagemap: return "pagemap-shmem"
        case .fileLocks: return "file-lock"
        case .mnts: return "mountpoints"
        case .ttyInfo: return "tty-info"
        case .ttyData: return "tty-data"
        case .ipcnsVar: return "ipcns-var"
        case .ipcnsShm: return "ipcns-shm"
        case .ipcnsSem: return "ipcns-sem"
        case .ipcnsMsg: return "ipcns-msg"
        default: return rawValue
        }
    }

    /// Whether the file name carries an id: the pid/tid, the pages id or the files id.
    public var hasID: Bool {
        switch self {
        case .inventory, .pstree, .files, .regFiles, .remapFpath, .pipesData, .fifoData, .skQueues, .memfdInode: return false
        case .seccomp, .cgroup, .fileLocks, .ttyInfo, .ttyData: return false
        default: return true
        }
    }

    /// File name for this kind; `id` is ignored for kinds named without one.
    public func fileName(_ id: Int? = nil) -> String {
        guard hasID else { return "\(stem).img" }
        return idIsHex ? "\(stem)-\(String(id ?? 0, radix: 16)).img" : "\(stem)-\(id ?? 0).img"
    }

    /// CRIU names tcp-stream images by the socket's inode in hex ("tcp-stream-%x").
    public var idIsHex: Bool { self == .tcpStream }

    /// The message of the first entry when it differs from the others (pagemap's head).
    public var headType: (any SwiftProtobuf.Message.Type)? {
        self == .pagemap || self == .shmemPagemap ? Img_PagemapHead.self : nil
    }

    /// The message of each entry; nil for raw images.
    public var entryType: (any SwiftProtobuf.Message.Type)? {
        switch self {
        case .inventory: return Img_InventoryEntry.self
        case .pstree: return Img_PstreeEntry.self
        case .core: return Img_CoreEntry.self
        case .ids: return Img_TaskKobjIdsEntry.self
        case .mm: return Img_MmEntry.self
        case .pagemap, .shmemPagemap: return Img_PagemapEntry.self
        case .pages: return nil
        case .files: return Img_FileEntry.self
        case .fdinfo: return Img_FdinfoEntry.self
        case .fs: return Img_FsEntry.self
        case .sigacts: return Img_SaEntry.self
        case .remapFpath: return Img_RemapFilePathEntry.self
        case .ghostFile: return Img_GhostFileEntry.self
        case .itimers: return Img_ItimerEntry.self
        case .posixTimers: return Img_PosixTimerEntry.self
        case .creds: return Img_CredsEntry.self
        case .rlimit: return Img_RlimitEntry.self
        case .regFiles: return Img_RegFileEntry.self
        case .pipesData, .fifoData: return Img_PipeDataEntry.self
        case .skQueues: return Img_SkPacketEntry.self
        case .memfdInode: return Img_MemfdInodeEntry.self
        case .tcpStream: return Img_TcpStreamEntry.self
        case .seccomp: return Img_SeccompEntry.self
        case .cgroup: return Img_CgroupEntry.self
        case .netdev: return Img_NetDeviceEntry.self
        case .netns: return Img_NetnsEntry.self
        case .fileLocks: return Img_FileLockEntry.self
        case .ifaddr, .route, .route6: return nil
        case .utsns: return Img_UtsnsEntry.self
        case .userns: return Img_UsernsEntry.self
        case .timens: return Img_TimensEntry.self
        case .mnts: return Img_MntEntry.self
        case .ttyInfo: return Img_TtyInfoEntry.self
        case .ttyData: return Img_TtyDataEntry.self
        case .ipcnsVar: return Img_IpcVarEntry.self
        case .ipcnsShm: return Img_IpcShmEntry.self
        case .ipcnsSem: return Img_IpcSemEntry.self
        case .ipcnsMsg: return Img_IpcMsgEntry.self
        }
    }

    /// For kinds whose entries are each followed by raw bytes: how many, from the entry.
    public var payloadLength: ((any SwiftProtobuf.Message) -> Int)? {
        switch self {
        case .pipesData, .fifoData: return { Int(($0 as? Img_PipeDataEntry)?.bytes ?? 0) }
        case .skQueues: return { Int(($0 as? Img_SkPacketEntry)?.length ?? 0) }
        case .tcpStream: return { ($0 as? Img_TcpStreamEntry).map { Int($0.inqLen) + Int($0.outqLen) } ?? 0 }
        default: return nil
        }
    }

    /// Images that hold exactly one entry.
    public var isSingleEntry: Bool {
        switch self {
        case .inventory, .core, .ids, .mm, .fs, .creds: return true
        case .seccomp, .cgroup, .netns, .utsns, .ipcnsVar, .userns, .timens: return true
        default: return false
        }
    }

    /// Images whose one entry is followed by raw bytes (a ghost file's contents).
    public var hasRawTail: Bool { self == .ghostFile }

    /// The kind and id a file name stands for, or nil for names that are not images of ours.
    /// Longest stem first, so that "pagemap-1.img" is not taken for a "pages" image.
    public static func parse(fileName name: String) -> (kind: ImageKind, id: Int?)? {
        guard name.hasSuffix(".img") else { return nil }
        let base = name.dropLast(4)
        for kind in allCases.sorted(by: { $0.stem.count > $1.stem.count }) {
            if !kind.hasID {
                if base == kind.stem { return (kind, nil) }
                continue
            }
            let prefix = kind.stem + "-"
            guard base.hasPrefix(prefix) else { continue }
            let digits = base.dropFirst(prefix.count)
            // Only the ids we write: decimal (hex for tcp-stream, lower case), no sign, no
            // leading zero, and it must fit.
            let hex = kind.idIsHex
            func isDigit(_ c: UInt8) -> Bool {
                if c >= 48 && c <= 57 { return true }
                return hex && c >= 97 && c <= 102
            }
            guard !digits.isEmpty, digits.utf8.allSatisfy(isDigit),
                  digits.count == 1 || !digits.hasPrefix("0"), let id = Int(digits, radix: kind.idIsHex ? 16 : 10) else { continue }
            return (kind, id)
        }
        return nil
    }
}

/// Bits of PagemapEntry.flags (CRIU's PE_*).
public struct PagemapFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The pages are in the parent snapshot.
    public static let parent = PagemapFlags(rawValue: 1 << 0)
    /// The pages may be restored lazily (post-copy).
    public static let lazy = PagemapFlags(rawValue: 1 << 1)
    /// The pages' bytes are in this directory's pages file.
    public static let present = PagemapFlags(rawValue: 1 << 2)
    /// cryo: the pages are the parent process's (shared copy-on-write when dumped); they are
    /// in the parent's pages image at the same address.
    public static let cowParent = PagemapFlags(rawValue: 1 << 8)
}

extension Img_PagemapEntry {
    /// Flags, mapping images without them (old CRIU, in_parent only) to what they mean.
    public var pageFlags: PagemapFlags {
        if hasFlags { return PagemapFlags(rawValue: flags) }
        return inParent ? [.parent] : [.present]
    }

    /// Whether this entry's bytes are stored in this directory's pages file.
    public var hasData: Bool { pageFlags.contains(.present) && !pageFlags.contains(.parent) }

    public init(vaddr: UInt64, nrPages: UInt32, flags: PagemapFlags) {
        self.init()
        self.vaddr = vaddr
        self.nrPages = nrPages
        self.flags = flags.rawValue
        // Readers that know only in_parent still see the parent pages.
        if flags.contains(.parent) { inParent = true }
    }
}
