import CKernel
import Foundation
import Glibc
import Logging

public enum TrackKeeperError: Error, CustomStringConvertible {
    case io(name: String, call: String, errno: Int32)
    case untrusted(name: String, uid: UInt32)
    case badReply(name: String, reason: String)
    case spawn(path: String, errno: Int32)
    case noExecutable(tried: String)

    public var description: String {
        switch self {
        case .io(let n, let c, let e): return "tracking keeper @\(n): \(c) failed: \(String(cString: strerror(e))) (errno \(e))"
        case .untrusted(let n, let u): return "tracking keeper @\(n) runs as uid \(u), neither root nor us (uid \(geteuid())): not using it"
        case .badReply(let n, let r): return "tracking keeper @\(n): \(r)"
        case .spawn(let p, let e): return "cannot start the tracking keeper \(p): \(String(cString: strerror(e)))"
        case .noExecutable(let t): return "no cryo executable to run the tracking keeper (tried \(t))"
        }
    }
}

/// The keeper holds dirty tracking between cryo runs when the caller passes no --track-store:
/// the same parcels a track store holds (a userfaultfd per process, by SCM_RIGHTS), kept by a
/// small process cryo starts on the first snapshot. It never touches the target: it only holds
/// fds cryo hands it and watches each target with a pidfd. It is reached on an abstract unix
/// seqpacket socket (no file to leave behind) and serves only root and its own uid (SO_PEERCRED).
/// It exits when it holds nothing and no run is talking to it (a final dump took the tracking),
/// when every target it tracked has exited, or after `idleSeconds` with no run talking to it.
public enum TrackKeeper {
    /// CRYO_TRACK_KEEPER names another keeper (tests, separate chains); "off" disables it.
    public static var name: String? {
        let env = ProcessInfo.processInfo.environment["CRYO_TRACK_KEEPER"] ?? ""
        if env == "off" { return nil }
        return env.isEmpty ? "cryo-track-keeper.\(geteuid())" : env
    }

    /// How long a keeper with no run talking to it keeps its tracking (CRYO_TRACK_IDLE seconds).
    /// Ten minutes: longer than the pause between the steps of a migration, short enough that a
    /// chain given up on stops costing the target its write-protect faults.
    public static let defaultIdleSeconds = 600
    public static var idleSeconds: Int {
        if let s = ProcessInfo.processInfo.environment["CRYO_TRACK_IDLE"], let v = Int(s), v > 0 { return v }
        return defaultIdleSeconds
    }

    static let magic: UInt64 = 0x3150_4545_4b4f_5952  // "RYOKEEP1", little-endian
    static let headerSize = 16

    enum Op: UInt32 {
        case take = 1, put = 2, list = 3
        case parcel = 10, info = 11, end = 12, keeper = 13
    }

    static func header(_ op: Op, _ arg: UInt32 = 0) -> [UInt8] {
        var b: [UInt8] = []
        b.putU64(magic); b.putU32(op.rawValue); b.putU32(arg)
        return b
    }

    static func parseHeader(_ b: [UInt8], count: Int) -> (op: Op, arg: UInt32)? {
        guard count >= headerSize, b.u64(at: 0) == magic, let op = Op(rawValue: b.u32(at: 8)) else { return nil }
        return (op, b.u32(at: 12))
    }

    static func address(_ name: String) -> (addr: sockaddr_un, len: socklen_t) {
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8.prefix(100))
        withUnsafeMutableBytes(of: &a.sun_path) { p in
            p[0] = 0  // abstract
            for (i, c) in bytes.enumerated() { p[1 + i] = c }
        }
        return (a, socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count))
    }

    /// SO_PEERCRED of a connected unix socket: the peer's pid and uid when it connected (or listened).
    static func peer(_ fd: Int32) -> (pid: Int32, uid: UInt32)? {
        var cred = (Int32(0), UInt32(0), UInt32(0))  // struct ucred
        var len = socklen_t(MemoryLayout.size(ofValue: cred))
        guard getsockopt(fd, SOL_SOCKET, 17 /* SO_PEERCRED */, &cred, &len) == 0 else { return nil }
        return (cred.0, cred.1)
    }

    /// Who may use a keeper, and whom a keeper may serve: root and the same uid.
    static func trusted(uid: UInt32) -> Bool { uid == 0 || uid == geteuid() }

    /// A seqpacket socket bound to `name` and listening, or nil if the name is taken (a keeper is there).
    public static func bindListening(_ name: String) throws -> Int32? {
        let s = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if s < 0 { throw TrackKeeperError.io(name: name, call: "socket", errno: errno) }
        var (a, len) = address(name)
        let r = withUnsafePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        if r != 0 {
            let e = errno
            close(s)
            if e == EADDRINUSE { return nil }
            throw TrackKeeperError.io(name: name, call: "bind", errno: e)
        }
        if listen(s, 64) != 0 { let e = errno; close(s); throw TrackKeeperError.io(name: name, call: "listen", errno: e) }
        return s
    }
}

/// The keeper's loop (`cryo track keeper`): one thread, poll over the listening socket, the
/// clients and a pidfd per tracked process. Requests are one message each; replies are small.
public final class TrackKeeperServer {
    struct Key: Hashable { let pid: Int32; let start: UInt64 }
    struct Entry { var parcel: TrackParcel; let pidfd: Int32; let since: Date }

    let listenFd: Int32
    let name: String
    let idle: Double
    private var entries: [Key: Entry] = [:]
    private var clients: [Int32: (pid: Int32, uid: UInt32)] = [:]
    private var lastActivity = Date()
    /// Set by the first take or put: until then (just started, or only listed) empty is not "done".
    private var servedAnyone = false
    private var emptyReason = "nothing left to track"
    private let proc = ProcReader()
    private let log = Logger(label: "keeper")
    private var buf = [UInt8](repeating: 0, count: TrackWire.maxMessage + TrackKeeper.headerSize)

    public init(listenFd: Int32, name: String, idleSeconds: Double) {
        self.listenFd = listenFd; self.name = name; self.idle = idleSeconds
        _ = ck_fcntl_int(listenFd, F_SETFL, ck_fcntl_int(listenFd, F_GETFL, 0) | O_NONBLOCK)
    }

    /// Serves until there is nothing left to keep; returns why it stopped.
    @discardableResult
    public func run() -> String {
        let why = loop()
        log.info("keeper @\(name) exits: \(why)")
        return why
    }

    private func loop() -> String {
        log.info("keeper @\(name) pid \(getpid()) uid \(geteuid()): serving, idle timeout \(Int(idle)) s")
        defer {
            for e in entries.values { e.parcel.closeFds(); close(e.pidfd) }
            entries = [:]
            for c in clients.keys { close(c) }
            close(listenFd)
        }
        while true {
            if clients.isEmpty {
                acceptPending()
                if clients.isEmpty {
                    if entries.isEmpty && servedAnyone { return emptyReason }
                    if Date().timeIntervalSince(lastActivity) >= idle {
                        return "idle for \(Int(idle)) s: dropped the tracking of \(entries.count) process(es)"
                    }
                }
            }
            var pfds: [pollfd] = [pollfd(fd: listenFd, events: Int16(POLLIN), revents: 0)]
            pfds += clients.keys.sorted().map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let watched = entries.map { ($0.key, $0.value.pidfd) }
            pfds += watched.map { pollfd(fd: $0.1, events: Int16(POLLIN), revents: 0) }
            var timeout: Int32 = -1
            if clients.isEmpty { timeout = Int32(max(0, min(idle - Date().timeIntervalSince(lastActivity), 3600)) * 1000) + 1 }
            let n = poll(&pfds, nfds_t(pfds.count), timeout)
            if n < 0 {
                if errno == EINTR { continue }
                return "poll failed: \(String(cString: strerror(errno)))"
            }
            if pfds[0].revents != 0 { acceptPending() }
            let nc = pfds.count - 1 - watched.count
            for i in 0..<nc where pfds[1 + i].revents != 0 { serve(pfds[1 + i].fd) }
            for (i, w) in watched.enumerated() where pfds[1 + nc + i].revents != 0 {
                guard let e = entries[w.0], e.pidfd == w.1 else { continue }
                log.info("pid \(w.0.pid) exited: dropping its tracking")
                drop(w.0)
                emptyReason = "every tracked process exited"
            }
        }
    }

    private func acceptPending() {
        while true {
            let c = accept(listenFd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            _ = ck_fcntl_int(c, F_SETFD, FD_CLOEXEC)
            guard let who = TrackKeeper.peer(c), TrackKeeper.trusted(uid: who.uid) else {
                let who = TrackKeeper.peer(c)
                log.warning("refused a connection from pid \(who?.pid ?? -1) uid \(who.map { String($0.uid) } ?? "?"): only root and uid \(geteuid()) may use this keeper")
                close(c)
                continue
            }
            // A client that stops reading must not stall the others for long.
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            _ = setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            clients[c] = who
            lastActivity = Date()
            log.debug("client pid \(who.pid) uid \(who.uid) connected")
        }
    }

    private func disconnect(_ c: Int32) {
        clients.removeValue(forKey: c)
        close(c)
        lastActivity = Date()
    }

    private func drop(_ key: Key) {
        guard let e = entries.removeValue(forKey: key) else { return }
        e.parcel.closeFds()
        close(e.pidfd)
    }

    private func reply(_ c: Int32, _ bytes: [UInt8], fds: [Int32] = []) -> Bool {
        TrackWire.send(c, bytes, fds: fds, flags: Int32(MSG_NOSIGNAL)) == bytes.count
    }

    private func serve(_ c: Int32) {
        let r = TrackWire.receive(c, into: &buf, flags: Int32(MSG_DONTWAIT))
        if r.count < 0 && (r.errno == EAGAIN || r.errno == EINTR) { return }
        lastActivity = Date()
        guard r.count > 0, !r.truncated, let h = TrackKeeper.parseHeader(buf, count: r.count) else {
            for f in r.fds { close(f) }
            if r.count != 0 { log.warning("client pid \(clients[c]?.pid ?? -1): unreadable request, closing it") }
            disconnect(c)
            return
        }
        let body = buf[TrackKeeper.headerSize..<r.count]
        var ok = true
        switch h.op {
        case .take:
            servedAnyone = true
            for f in r.fds { close(f) }
            ok = take(c, body: Array(body), count: Int(h.arg))
        case .put:
            servedAnyone = true
            ok = put(c, body: body, fds: r.fds)
        case .list:
            for f in r.fds { close(f) }
            ok = list(c)
        default:
            for f in r.fds { close(f) }
            ok = false
        }
        if !ok {
            log.warning("client pid \(clients[c]?.pid ?? -1): bad \(h.op) request or reply failed, closing it")
            disconnect(c)
        }
    }

    /// Hands over (and forgets) the parcels of the given processes; a parcel left by an earlier
    /// process with the same pid is dropped.
    private func take(_ c: Int32, body: [UInt8], count: Int) -> Bool {
        guard body.count == 16 * count else { return false }
        for i in 0..<count {
            let pid = Int32(bitPattern: body.u32(at: 16 * i)), start = body.u64(at: 16 * i + 8)
            for key in entries.keys where key.pid == pid && key.start != start { drop(key) }
            let key = Key(pid: pid, start: start)
            guard let e = entries[key] else { continue }
            guard reply(c, TrackKeeper.header(.parcel) + TrackWire.encode(e.parcel), fds: e.parcel.fds) else { return false }
            log.info("pid \(pid): tracking handed to client pid \(clients[c]?.pid ?? -1)")
            drop(key)
            emptyReason = "the last tracking was taken"
        }
        return reply(c, TrackKeeper.header(.end))
    }

    /// Keeps a parcel while its process lives: the process is pinned by a pidfd whose start
    /// time is checked, so a recycled pid never inherits it.
    private func put(_ c: Int32, body: ArraySlice<UInt8>, fds: [Int32]) -> Bool {
        guard case .success(let parcel) = TrackWire.decode(body, fds: fds) else {
            for f in fds { close(f) }
            return false
        }
        let key = Key(pid: parcel.pid, start: parcel.startTime)
        var accepted = false
        if let pidfd = try? Sys.pidfdOpen(parcel.pid) {
            if let st = try? proc.stat(pid: parcel.pid), st.starttime == parcel.startTime {
                for k in entries.keys where k.pid == parcel.pid { drop(k) }
                _ = ck_fcntl_int(pidfd, F_SETFD, FD_CLOEXEC)
                entries[key] = Entry(parcel: parcel, pidfd: pidfd, since: Date())
                accepted = true
                emptyReason = "nothing left to track"
                log.info("pid \(parcel.pid): keeping its tracking (\(parcel.armed.count) ranges, \(parcel.fds.count) fd(s))")
            } else {
                close(pidfd)
            }
        }
        if !accepted {
            log.info("pid \(parcel.pid): gone or not the process that was tracked: tracking dropped")
            parcel.closeFds()
        }
        return reply(c, TrackKeeper.header(.end, accepted ? 0 : 1))
    }

    private func list(_ c: Int32) -> Bool {
        var k = TrackKeeper.header(.keeper)
        k.putU32(UInt32(bitPattern: getpid())); k.putU32(geteuid()); k.putU64(UInt64(idle)); k.putU32(UInt32(clients.count)); k.putU32(0)
        guard reply(c, k) else { return false }
        for (key, e) in entries.sorted(by: { $0.key.pid < $1.key.pid }) {
            var m = TrackKeeper.header(.info)
            m.putU64(UInt64(max(0, Date().timeIntervalSince(e.since) * 1000)))
            m += TrackWire.encode(e.parcel)
            _ = key
            guard reply(c, m) else { return false }
        }
        return reply(c, TrackKeeper.header(.end))
    }
}
