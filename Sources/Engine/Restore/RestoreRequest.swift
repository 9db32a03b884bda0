import Glibc

public struct RestoreRequest: Sendable {
    public var imagesDir: String
    /// Return once the tree runs, instead of waiting for it to exit.
    public var detach = false
    public var pidfile: String?
    /// The tree was a shell's job: it joins the caller's session and terminal (CRIU's --shell-job).
    public var shellJob = false
    /// Leave private anonymous pages to `cryo lazy-pages` (userfaultfd), reached through
    /// lazy-pages.socket in `workDir` (the images directory unless given).
    public var lazyPages = false
    public var workDir: String?
    /// Read the images from here instead of the folder at imagesDir (which then only anchors
    /// a relative parent link).
    public var imageStore: ImageStore?
    /// What happens to the tree's cgroups (cgroup.img): CRIU's --manage-cgroups.
    public var manageCgroups: CgroupMode = .soft
    /// CRIU's --external specs: veth[IFNAME]:OUTSIDE[@BRIDGE] for the restored network namespace.
    public var external: [String] = []
    /// --inherit-fd: the caller's fds that stand for objects shared outside the tree.
    public var inheritedFds = InheritedFds()
    /// CRIU's --ext-unix-sk: reconnect sockets dumped as connected to an outside named socket.
    public var extUnixSk = false
    public var networkLock: NetworkLockMethod = .nftables
    /// CRIU's action points, for an RPC caller that asked to be notified.
    public var actionHook: ActionHook?
    /// The root becomes a child of cryo's parent (CRIU's --restore-sibling): runc waits for it.
    public var sibling = false
    /// CRIU's --root: the filesystem the tree's root mount comes back from (a tree that
    /// pivoted into a root of its own, a container).
    public var root: String?
    /// CRIU's --empty-ns: namespaces (CLONE_NEWNET) made empty, for the caller to fill.
    public var emptyNamespaces: Int32 = 0
    /// CRIU's --cgroup-root [CONTROLLER:]PATH, checked against cgroup.img (CgroupRestore).
    public var cgroupRoots: [String] = []
    public init(imagesDir: String) { self.imagesDir = imagesDir }
}

public enum RestoreError: Error, CustomStringConvertible {
    case pidTaken(pid: Int32, by: String)
    case fileMissing(path: String, errno: Int32)
    case fileChanged(path: String, expectedSize: UInt64, actualSize: UInt64)
    case unsupported(String)
    case create(pid: Int32, errno: Int32)
    case layout(pid: Int32, reason: String)
    case transport(pid: Int32, what: String, call: String, errno: Int32)
    /// A file of files.img could not be rebuilt.
    case file(pid: Int32, id: UInt32, what: String, reason: String)

    public var description: String {
        switch self {
        case .pidTaken(let p, let by): return "pid \(p) is taken by \(by)"
        case .fileMissing(let p, let e): return "\(p): needed by the images but \(String(cString: strerror(e)))"
        case .fileChanged(let p, let a, let b): return "\(p): size changed since the dump (\(a) -> \(b) bytes)"
        case .unsupported(let w): return "cannot restore \(w) yet"
        case .create(let p, let e): return "cannot create pid \(p): \(String(cString: strerror(e)))"
        case .layout(let p, let r): return "pid \(p): \(r)"
        case .transport(let p, let w, let c, let e): return "pid \(p): installing \(w): \(c): \(String(cString: strerror(e)))"
        case .file(let p, let id, let w, let r): return "pid \(p): file id \(id) (\(w)): \(r)"
        }
    }
}
