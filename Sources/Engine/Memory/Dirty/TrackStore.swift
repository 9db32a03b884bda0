import CKernel
import Glibc

public enum TrackStoreError: Error, CustomStringConvertible {
    case notASocket(fd: Int32, errno: Int32)
    case io(fd: Int32, call: String, errno: Int32)
    case badMessage(fd: Int32, reason: String)

    public var description: String {
        switch self {
        case .notASocket(let fd, let e): return "track store fd \(fd) is not a unix datagram socket (\(String(cString: strerror(e))))"
        case .io(let fd, let c, let e): return "track store fd \(fd): \(c) failed: \(String(cString: strerror(e))) (errno \(e))"
        case .badMessage(let fd, let r): return "track store fd \(fd): unreadable message: \(r)"
        }
    }
}

/// What one cryo run leaves for the next about one process: the fds that keep its tracking alive
/// (the userfaultfd; none for soft-dirty) and the ranges it armed.
public struct TrackParcel: Sendable, Equatable {
    public var pid: Int32
    /// starttime from /proc/PID/stat: a recycled pid is another process, whose parcel is stale.
    public var startTime: UInt64
    public var backend: DirtyTrackingBackend
    public var fds: [Int32]
    /// Page-aligned, sorted, disjoint ranges that were armed when the parcel was made.
    public var armed: [PageRun]

    public init(pid: Int32, startTime: UInt64, backend: DirtyTrackingBackend, fds: [Int32], armed: [PageRun]) {
        self.pid = pid; self.startTime = startTime; self.backend = backend; self.fds = fds; self.armed = armed
    }

    /// Closes the fds this parcel holds (ours after `take`).
    public func closeFds() { for f in fds { close(f) } }
}

/// Dirty tracking must outlive the cryo process that armed it, with no daemon and no fd left in
/// the target; closing the last fd of a userfaultfd would unregister it. So, like CRIU's
/// --pidfd-store, the caller owns a unix datagram socket connected to itself and passes its fd:
/// cryo parks each process's tracking fds in it as SCM_RIGHTS messages (the kernel holds them
/// in the socket's queue) and takes them back on the next run. Closing the socket drops them all.
public struct TrackStore {
    public let fd: Int32
    static let maxMessage = TrackWire.maxMessage
    static let maxFds = TrackWire.maxFds

    /// Checks that `fd` is a datagram unix socket; it stays the caller's.
    public init(fd: Int32) throws {
        var type: Int32 = 0, family = sockaddr_un()
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 else { throw TrackStoreError.notASocket(fd: fd, errno: errno) }
        var alen = socklen_t(MemoryLayout<sockaddr_un>.size)
        let ok = withUnsafeMutablePointer(to: &family) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &alen) }
        }
        guard ok == 0, type == Int32(SOCK_DGRAM.rawValue), family.sun_family == sa_family_t(AF_UNIX) else {
            throw TrackStoreError.notASocket(fd: fd, errno: ok == 0 ? EPROTOTYPE : errno)
        }
        self.fd = fd
    }

    /// A datagram socket bound to an abstract address and connected to itself: what a caller
    /// (zdtm, a container runtime) creates once and keeps open between cryo runs.
    public static func makeSocket(cloexec: Bool = true) throws -> Int32 {
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | (cloexec ? Int32(SOCK_CLOEXEC.rawValue) : 0), 0)
        if s < 0 { throw TrackStoreError.io(fd: -1, call: "socket", errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        // Binding only the family autobinds a unique abstract name.
        var r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sa_family_t>.size)) }
        }
        if r != 0 { let e = errno; close(s); throw TrackStoreError.io(fd: s, call: "bind", errno: e) }
        var len = socklen_t(MemoryLayout<sockaddr_un>.size)
        r = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        if r != 0 { let e = errno; close(s); throw TrackStoreError.io(fd: s, call: "getsockname", errno: e) }
        r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, len) }
        }
        if r != 0 { let e = errno; close(s); throw TrackStoreError.io(fd: s, call: "connect", errno: e) }
        return s
    }

    /// Parks `parcel`: its fds are duplicated into the message, so the caller still closes its own.
    public func put(_ parcel: TrackParcel) throws {
        guard parcel.fds.count <= TrackStore.maxFds else { throw TrackStoreError.badMessage(fd: fd, reason: "\(parcel.fds.count) fds in one parcel") }
        let payload = TrackWire.encode(parcel)
        guard payload.count <= TrackStore.maxMessage else {
            throw TrackStoreError.badMessage(fd: fd, reason: "pid \(parcel.pid): \(parcel.armed.count) armed ranges do not fit one message")
        }
        let n = TrackWire.send(fd, payload, fds: parcel.fds, flags: Int32(MSG_DONTWAIT))
        if n < 0 { throw TrackStoreError.io(fd: fd, call: "sendmsg", errno: errno) }
        if n != payload.count { throw TrackStoreError.badMessage(fd: fd, reason: "sent \(n) of \(payload.count) bytes") }
    }

    /// Drains the store: every parcel in it, fds now ours (close-on-exec). Callers put back
    /// what is not theirs.
    public func takeAll() throws -> [TrackParcel] {
        var out: [TrackParcel] = []
        var buf = [UInt8](repeating: 0, count: TrackStore.maxMessage)
        while true {
            let r = TrackWire.receive(fd, into: &buf, flags: Int32(MSG_DONTWAIT))
            if r.count < 0 {
                if r.errno == EAGAIN || r.errno == EWOULDBLOCK { break }
                if r.errno == EINTR { continue }
                out.forEach { $0.closeFds() }
                throw TrackStoreError.io(fd: fd, call: "recvmsg", errno: r.errno)
            }
            do {
                if r.truncated { throw TrackStoreError.badMessage(fd: fd, reason: "message or its fds truncated") }
                out.append(try parse(Array(buf.prefix(r.count)), fds: r.fds))
            } catch {
                for f in r.fds { close(f) }
                out.forEach { $0.closeFds() }
                throw error
            }
        }
        return out
    }

    func parse(_ b: [UInt8], fds: [Int32]) throws -> TrackParcel {
        switch TrackWire.decode(b[...], fds: fds) {
        case .success(let p): return p
        case .failure(let e): throw TrackStoreError.badMessage(fd: fd, reason: e.reason)
        }
    }
}
