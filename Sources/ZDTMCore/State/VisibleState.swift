import Engine

/// What zdtm can see of a workload's tree from outside, recorded before and after C/R.
public struct VisibleState: Equatable, Sendable {
    public struct Thread: Equatable, Sendable {
        public var tid: Int32
        public var sigBlk: UInt64
        /// The thread sat in a call that swaps its mask while it waits (sigtimedwait,
        /// sigsuspend, ppoll, pselect, epoll_pwait): /proc showed the call's mask, not its own.
        public var maskIsTemporary = false
        public init(tid: Int32, sigBlk: UInt64, maskIsTemporary: Bool = false) {
            self.tid = tid; self.sigBlk = sigBlk; self.maskIsTemporary = maskIsTemporary
        }
    }
    public struct Map: Equatable, Sendable {
        public var start: UInt64
        public var end: UInt64
        public var perms: String
        public var offset: UInt64
        public var path: String
        public init(start: UInt64, end: UInt64, perms: String, offset: UInt64, path: String) {
            self.start = start; self.end = end; self.perms = perms; self.offset = offset; self.path = path
        }
        public var range: String { String(start, radix: 16) + "-" + String(end, radix: 16) }
        public var text: String { "\(range) \(perms) \(String(offset, radix: 16))" + (path.isEmpty ? "" : " " + path) }
    }
    public struct Fd: Equatable, Sendable {
        public var fd: Int32
        public var target: String
        /// Open flags from fdinfo (octal in messages); -1 when unreadable.
        public var flags: Int32
        public init(fd: Int32, target: String, flags: Int32) { self.fd = fd; self.target = target; self.flags = flags }
    }
    public struct Process: Equatable, Sendable {
        public var pid: Int32
        public var ppid: Int32
        public var pgid: Int32
        public var sid: Int32
        public var comm: String
        public var threads: [Thread]
        public var maps: [Map]
        public var fds: [Fd]
        public var cwd: String
        public var sigIgn: UInt64
        public var sigCgt: UInt64
        /// Dead, not yet reaped: only its place in the tree is left to compare.
        public var isZombie: Bool
        /// pid and sid as zdtm sees them (to reap); pid, ppid, pgid, sid and tids above are
        /// the ones inside the tree's pid namespace, which a restore keeps.
        public var hostPid: Int32 = 0
        public var hostSid: Int32 = 0
        public init(pid: Int32, ppid: Int32, pgid: Int32, sid: Int32, comm: String, threads: [Thread] = [],
                    maps: [Map] = [], fds: [Fd] = [], cwd: String = "/", sigIgn: UInt64 = 0, sigCgt: UInt64 = 0,
                    isZombie: Bool = false) {
            self.pid = pid; self.ppid = ppid; self.pgid = pgid; self.sid = sid; self.comm = comm
            self.threads = threads; self.maps = maps; self.fds = fds; self.cwd = cwd; self.sigIgn = sigIgn; self.sigCgt = sigCgt
            self.isZombie = isZombie
            self.hostPid = pid; self.hostSid = sid
        }
    }
    /// Sorted by pid; the first recorded root is `root`.
    public var root: Int32
    public var processes: [Process]
    public init(root: Int32, processes: [Process]) { self.root = root; self.processes = processes }

    public var pids: [Int32] { processes.map(\.pid) }
    public var hostPids: [Int32] { processes.map(\.hostPid) }
}

/// Parts of the state a workload may ask not to compare (catalogue `ignore:`).
public enum StatePart: String, CaseIterable, Sendable {
    case tree, threads, maps, fds, fdFlags = "fd-flags", cwd, sigmask
}
