import CKernel
import Foundation
import Glibc

/// One cryo run's connection to the tracking keeper. Held from taking the tree's parcels until
/// they are parked again, so the keeper (empty meanwhile) does not exit under the run.
public final class TrackKeeperClient {
    public let name: String
    let sock: Int32

    init(name: String, sock: Int32) { self.name = name; self.sock = sock }
    deinit { close(sock) }

    /// The cryo binary that runs `cryo track keeper`: this one, or the `cryo` beside this
    /// executable (cryo-bench, the tests). Callers may set it.
    nonisolated(unsafe) public static var executable: String? = {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        if (exe as NSString).lastPathComponent == "cryo" { return exe }
        let beside = (exe as NSString).deletingLastPathComponent + "/cryo"
        return access(beside, X_OK) == 0 ? beside : nil
    }()

    /// The running keeper called `name`, or nil if there is none.
    public static func connect(name: String) throws -> TrackKeeperClient? {
        let s = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if s < 0 { throw TrackKeeperError.io(name: name, call: "socket", errno: errno) }
        var (a, len) = TrackKeeper.address(name)
        let r = withUnsafePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, len) } }
        if r != 0 {
            let e = errno
            close(s)
            if e == ECONNREFUSED || e == ENOENT { return nil }
            throw TrackKeeperError.io(name: name, call: "connect", errno: e)
        }
        // Someone else may hold the name: userfaultfds go only to root or ourselves.
        guard let peer = TrackKeeper.peer(s) else { let e = errno; close(s); throw TrackKeeperError.io(name: name, call: "SO_PEERCRED", errno: e) }
        guard TrackKeeper.trusted(uid: peer.uid) else { close(s); throw TrackKeeperError.untrusted(name: name, uid: peer.uid) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return TrackKeeperClient(name: name, sock: s)
    }

    /// Connects to the keeper, starting one first if none runs. The listening socket is bound
    /// here and handed to the new keeper, so concurrent runs agree on one keeper (the name
    /// binds once) and our connection waits in its queue until it accepts.
    public static func connectOrStart(name: String, idleSeconds: Int) throws -> TrackKeeperClient {
        var lastError: Error?
        for attempt in 0..<5 {
            if attempt > 0 { usleep(UInt32(20_000 * attempt)) }
            do {
                if let c = try connect(name: name) { return c }
                guard let lfd = try TrackKeeper.bindListening(name) else { continue }  // bound by another run meanwhile
                defer { close(lfd) }
                guard let c = try connect(name: name) else { throw TrackKeeperError.io(name: name, call: "connect", errno: ECONNREFUSED) }
                try spawnKeeper(listenFd: lfd, name: name, idleSeconds: idleSeconds)
                return c
            } catch let e as TrackKeeperError {
                if case .untrusted = e { throw e }
                if case .noExecutable = e { throw e }
                lastError = e
            }
        }
        throw lastError ?? TrackKeeperError.io(name: name, call: "connect", errno: ECONNREFUSED)
    }

    static func spawnKeeper(listenFd: Int32, name: String, idleSeconds: Int) throws {
        guard let exe = executable else { throw TrackKeeperError.noExecutable(tried: "/proc/self/exe and the cryo beside it") }
        var args = [exe, "track", "keeper", "--listen-fd", "3", "--name", name, "--idle", String(idleSeconds)]
        if let logFile = ProcessInfo.processInfo.environment["CRYO_TRACK_KEEPER_LOG"], !logFile.isEmpty { args += ["-v4", "-o", logFile] }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        // Nothing of ours: not the caller's pipes (a reader waiting for EOF would wait for the
        // keeper), not the dump's files or the target's fds.
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&fa, 0, 1)
        posix_spawn_file_actions_adddup2(&fa, 0, 2)
        posix_spawn_file_actions_adddup2(&fa, listenFd, 3)
        ck_spawn_addclosefrom(&fa, 4)
        ck_spawn_addchdir(&fa, "/")  // holds no images folder or mount busy
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        // POSIX_SPAWN_SETSID (0x80) | SETSIGMASK (0x08): its own session, out of the caller's job.
        posix_spawnattr_setflags(&attr, Int16(0x80 | 0x08))
        let argv = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, exe, &fa, &attr, argv, environ)
        if r != 0 { throw TrackKeeperError.spawn(path: exe, errno: r) }
    }

    private func send(_ bytes: [UInt8], fds: [Int32] = []) throws {
        let n = TrackWire.send(sock, bytes, fds: fds, flags: Int32(MSG_NOSIGNAL))
        if n < 0 { throw TrackKeeperError.io(name: name, call: "sendmsg", errno: errno) }
        if n != bytes.count { throw TrackKeeperError.badReply(name: name, reason: "sent \(n) of \(bytes.count) bytes") }
    }

    private var buf = [UInt8](repeating: 0, count: TrackWire.maxMessage + TrackKeeper.headerSize)

    /// One reply message: its op, argument, body and fds (ours).
    private func receive() throws -> (op: TrackKeeper.Op, arg: UInt32, body: ArraySlice<UInt8>, fds: [Int32]) {
        while true {
            let r = TrackWire.receive(sock, into: &buf, flags: 0)
            if r.count < 0 && r.errno == EINTR { continue }
            if r.count < 0 { throw TrackKeeperError.io(name: name, call: "recvmsg", errno: r.errno) }
            guard r.count > 0 else { throw TrackKeeperError.badReply(name: name, reason: "the keeper closed the connection") }
            guard !r.truncated, let h = TrackKeeper.parseHeader(buf, count: r.count) else {
                for f in r.fds { close(f) }
                throw TrackKeeperError.badReply(name: name, reason: "unreadable reply of \(r.count) bytes")
            }
            return (h.op, h.arg, buf[TrackKeeper.headerSize..<r.count], r.fds)
        }
    }

    /// Takes the parcels of these processes out of the keeper; their fds are ours.
    public func take(_ keys: [(pid: Int32, start: UInt64)]) throws -> [TrackParcel] {
        var req = TrackKeeper.header(.take, UInt32(keys.count))
        for k in keys { req.putU32(UInt32(bitPattern: k.pid)); req.putU32(0); req.putU64(k.start) }
        try send(req)
        var out: [TrackParcel] = []
        do {
            while true {
                let m = try receive()
                switch m.op {
                case .end: return out
                case .parcel:
                    switch TrackWire.decode(m.body, fds: m.fds) {
                    case .success(let p): out.append(p)
                    case .failure(let e): for f in m.fds { close(f) }; throw TrackKeeperError.badReply(name: name, reason: e.reason)
                    }
                default:
                    for f in m.fds { close(f) }
                    throw TrackKeeperError.badReply(name: name, reason: "unexpected \(m.op) in a take")
                }
            }
        } catch {
            out.forEach { $0.closeFds() }
            throw error
        }
    }

    /// Hands a parcel to the keeper (its fds are duplicated; the caller still closes its own).
    /// False when the keeper refused it: the process is gone or was replaced.
    public func put(_ parcel: TrackParcel) throws -> Bool {
        let payload = TrackWire.encode(parcel)
        guard payload.count <= TrackWire.maxMessage, parcel.fds.count <= TrackWire.maxFds else {
            throw TrackKeeperError.badReply(name: name, reason: "pid \(parcel.pid): parcel too large (\(parcel.armed.count) ranges, \(parcel.fds.count) fds)")
        }
        try send(TrackKeeper.header(.put) + payload, fds: parcel.fds)
        let m = try receive()
        for f in m.fds { close(f) }
        guard m.op == .end else { throw TrackKeeperError.badReply(name: name, reason: "unexpected \(m.op) after a put") }
        return m.arg == 0
    }

    public struct Listing: Sendable {
        public struct Tracked: Sendable {
            public var pid: Int32
            public var startTime: UInt64
            public var backend: DirtyTrackingBackend
            public var armed: [PageRun]
            public var ageSeconds: Double
            public var armedPages: UInt64 { armed.reduce(0) { $0 + $1.pageCount } }
        }
        public var keeperPid: Int32
        public var uid: UInt32
        public var idleSeconds: UInt64
        public var clients: Int
        public var tracked: [Tracked]
    }

    public func list() throws -> Listing {
        try send(TrackKeeper.header(.list))
        var listing = Listing(keeperPid: 0, uid: 0, idleSeconds: 0, clients: 0, tracked: [])
        while true {
            let m = try receive()
            for f in m.fds { close(f) }
            let b = Array(m.body)
            switch m.op {
            case .end: return listing
            case .keeper:
                guard b.count >= 24 else { throw TrackKeeperError.badReply(name: name, reason: "short keeper record") }
                listing.keeperPid = Int32(bitPattern: b.u32(at: 0)); listing.uid = b.u32(at: 4)
                listing.idleSeconds = b.u64(at: 8); listing.clients = Int(b.u32(at: 16))
            case .info:
                guard b.count >= 8, case .success(let p) = TrackWire.decode(b[8...], fds: []) else {
                    throw TrackKeeperError.badReply(name: name, reason: "unreadable tracking record")
                }
                listing.tracked.append(.init(pid: p.pid, startTime: p.startTime, backend: p.backend, armed: p.armed,
                                             ageSeconds: Double(b.u64(at: 0)) / 1000))
            default:
                throw TrackKeeperError.badReply(name: name, reason: "unexpected \(m.op) in a listing")
            }
        }
    }
}

extension TrackKeeper {
    /// `cryo check`'s line about the keeper: what it tracks now.
    public static func checkLine(width: Int) -> String {
        let label = "tracking keeper".padding(toLength: max(width, 15), withPad: " ", startingAt: 0)
        guard let name else { return "\(label)  off             CRYO_TRACK_KEEPER=off: without --track-store every snapshot is full" }
        do {
            guard let c = try TrackKeeperClient.connect(name: name) else {
                return "\(label)  not running     @\(name): nothing tracked (starts with the first pre-dump or dump --track-mem)"
            }
            let l = try c.list()
            let pids = l.tracked.map { "\($0.pid) (\($0.armedPages) pages armed)" }.joined(separator: ", ")
            return "\(label)  running         @\(name) pid \(l.keeperPid): \(l.tracked.count) process(es) tracked\(pids.isEmpty ? "" : ": " + pids); see `cryo track`"
        } catch {
            return "\(label)  unusable        \(error)"
        }
    }
}
