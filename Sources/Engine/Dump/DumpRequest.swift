/// Everything one `cryo dump` needs to know; travels through the dump instead of globals.
public struct DumpRequest: Sendable {
    public enum Leave: Sendable { case killed, running, stopped }
    public var pid: Int32
    public var imagesDir: String
    public var leave: Leave = .killed
    /// Arm dirty-page tracking so a later snapshot can be incremental (CRIU's --track-mem).
    public var trackMem = false
    /// The previous snapshot, relative to imagesDir (or absolute): pages unchanged since are
    /// written as in-parent entries and a `parent` link points there.
    public var prevImagesDir: String?
    /// A unix datagram socket of the caller's that holds tracking between runs (TrackStore).
    public var trackStore: Int32?
    /// Send pagemaps and pages to this page server instead of writing them into imagesDir.
    public var pageServer: PageServerTarget?
    /// True: pages bound for a page server are spliced by the frozen task itself (vmsplice,
    /// no copy) instead of copied out (process_vm_readv, send); `dump --no-splice-pages` copies.
    /// cryo-bench times both.
    public var splicePages = true
    /// A job of a shell (CRIU's --shell-job): its terminal is the shell's, opened again at restore.
    public var shellJob = false
    /// Dump the file locks the tree holds (CRIU's --file-locks); without it a held lock refuses the dump.
    public var fileLocks = false
    /// Write the images here instead of a folder at imagesDir (which then only anchors a
    /// relative prevImagesDir).
    public var imageStore: ImageStore?
    /// `ignore` writes no cgroup.img; any other mode records the tree's cgroups.
    public var manageCgroups: CgroupMode = .soft
    /// CRIU's --external specs; veth[IFNAME]:OUTSIDE[@BRIDGE] names a link of the tree's own
    /// network namespace whose other end is outside (docs/NETNS.md).
    public var external: [String] = []
    /// How the tree's own network namespace is kept quiet while frozen (CRIU's --network-lock).
    public var networkLock: NetworkLockMethod = .nftables
    /// CRIU's action points, for an RPC caller that asked to be notified.
    public var actionHook: ActionHook?
    /// The tree's freezer cgroup (CRIU's --freeze-cgroup): every task in it must be in the tree.
    public var freezeCgroup: String?
    /// Namespaces whose contents the caller sets up itself (CRIU's --empty-ns, CLONE_NEW* bits).
    public var emptyNamespaces: Int32 = 0
    /// CRIU's --ext-unix-sk[=INO]: unix sockets connected outside the tree (docs/EXT-UNIX.md).
    public var extUnixSk = ExtUnixSk()
    public init(pid: Int32, imagesDir: String) { self.pid = pid; self.imagesDir = imagesDir }
}

public enum DumpError: Error, CustomStringConvertible {
    case unsupportedFd(pid: Int32, fd: Int32, kind: String, target: String)
    case unsupported(pid: Int32, what: String)
    case memoryChanged(pid: Int32, detail: String)
    /// A kind claimed the fd but its state cannot be taken (or refuses part of it).
    case fdState(pid: Int32, fd: Int32, target: String, reason: String)
    /// A file in flight (SCM_RIGHTS) in the queue of the socket at `fd` that cannot be dumped.
    case inFlight(pid: Int32, fd: Int32, target: String, kind: String, reason: String)
    /// The process died (SIGKILL reaches a frozen task) before its dump was complete.
    case processExited(pid: Int32, during: String)

    public var description: String {
        switch self {
        case .unsupportedFd(let p, let fd, let k, let t): return "pid \(p): fd \(fd) is a \(k) (\(t)), which cryo cannot dump yet"
        case .unsupported(let p, let w): return "pid \(p): \(w) cannot be dumped yet"
        case .memoryChanged(let p, let d): return "pid \(p): memory changed while dumping: \(d)"
        case .fdState(let p, let fd, let t, let r): return "pid \(p): fd \(fd) (\(t)): \(r)"
        case .inFlight(let p, let fd, let t, let k, let r): return "pid \(p): fd \(fd) (\(t)): \(k) in flight (SCM_RIGHTS) in its queue: \(r)"
        case .processExited(let p, let d): return "pid \(p) exited during the dump (\(d)): its images would not be the process"
        }
    }
}

/// CRIU's VMA status bits (vma.status in mm images).
public enum VmaStatus {
    public static let regular: UInt32 = 1 << 0
    public static let stack: UInt32 = 1 << 1
    public static let vsyscall: UInt32 = 1 << 2
    public static let vdso: UInt32 = 1 << 3
    public static let heap: UInt32 = 1 << 5
    public static let filePrivate: UInt32 = 1 << 6
    public static let fileShared: UInt32 = 1 << 7
    public static let anonShared: UInt32 = 1 << 8
    public static let anonPrivate: UInt32 = 1 << 9
    public static let sysvipc: UInt32 = 1 << 10
    public static let vvar: UInt32 = 1 << 12
    public static let memfd: UInt32 = 1 << 14
    /// cryo: the 6.x [vvar_vclock] page, moved with [vvar] and [vdso].
    public static let vvarVclock: UInt32 = 1 << 15
}
