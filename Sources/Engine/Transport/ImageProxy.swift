import Foundation
import Glibc
import Logging

public struct ImageProxyOptions: Sendable {
    /// The image cache's address and port.
    public var address = "127.0.0.1"
    public var port: UInt16
    /// The unix socket dumps write to.
    public var localPath: String
    public init(port: UInt16, localPath: String) { self.port = port; self.localPath = localPath }
}

/// What a writer may send, in which order, on one connection: data, end, complete and failed
/// only for a snapshot it began and has not finished, no data for an image after its end.
public struct RemoteFrameOrder: Sendable {
    private var open: [String: Set<String>] = [:]
    public init() {}

    public mutating func check(_ f: RemoteFrame) throws {
        switch f.kind {
        case .begin:
            guard open[f.snapshot] == nil else { throw RemoteProtocolError("snapshot \(f.snapshot) begun twice") }
            open[f.snapshot] = []
        case .data, .end:
            guard let ended = open[f.snapshot] else { throw RemoteProtocolError("\(f.kind) for unknown snapshot id \(f.snapshot)") }
            guard !ended.contains(f.name) else { throw RemoteProtocolError("\(f.kind) for image \(f.name) after its end") }
            if f.kind == .end { open[f.snapshot]!.insert(f.name) }
        case .complete, .failed:
            guard open[f.snapshot] != nil else { throw RemoteProtocolError("\(f.kind) for unknown snapshot id \(f.snapshot)") }
            open[f.snapshot] = nil
        case .get, .info, .restore: break
        case .ok, .error, .getFd: throw RemoteProtocolError("a writer does not send \(f.kind)")
        }
    }

    /// Snapshots begun and not finished.
    public var unfinished: [String] { Array(open.keys) }
}

/// `cryo image-proxy`: takes images from dumps on a local unix socket and forwards each frame
/// to the image cache as it arrives, one TCP connection to the cache per dump. Every frame is
/// validated on the way; a bad one closes both connections (the cache then fails the snapshot).
/// Data payloads are spliced from one socket to the other, never copied into the proxy.
public final class ImageProxy: @unchecked Sendable {
    public let options: ImageProxyOptions
    let localFd: Int32
    let log = Logger(label: "image-proxy")
    private let lock = NSLock()
    private var stopped = false
    private var connections = 0

    public init(_ options: ImageProxyOptions) throws {
        self.options = options
        localFd = try UnixStream.listen(path: options.localPath)
    }

    deinit { close(localFd); unlink(options.localPath) }

    public func stop() { lock.lock(); stopped = true; lock.unlock() }
    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    public func serve() {
        log.info("forwarding \(options.localPath) to the cache at \(options.address):\(options.port)")
        var pfd = pollfd(fd: localFd, events: Int16(POLLIN), revents: 0)
        while !isStopped {
            if poll(&pfd, 1, 200) <= 0 { continue }
            let fd = accept(localFd, nil, nil)
            if fd < 0 { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            lock.lock(); connections += 1; let n = connections; lock.unlock()
            let t = Thread { [self] in self.relay(fd: fd, number: n) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    func relay(fd: Int32, number: Int) {
        defer { close(fd) }
        guard UnixStream.peerAllowed(fd) else { log.error("connection \(number): peer is neither root nor our uid, closed"); return }
        let dump = RemoteConnection(fd: fd, peer: "dump on \(options.localPath)")
        let cacheFd: Int32
        do { cacheFd = try TCP.connect(address: options.address, port: options.port) } catch {
            log.error("connection \(number): cannot reach the cache: \(error)")
            try? dump.write(RemoteFrame(.error, snapshot: "-", payload: Array("image proxy cannot reach the cache at \(options.address):\(options.port): \(error)".utf8)))
            return
        }
        defer { close(cacheFd) }
        let cache = RemoteConnection(fd: cacheFd, peer: "cache \(options.address):\(options.port)")
        var order = RemoteFrameOrder()
        do {
            let relay = try SpliceRelay()
            while let (f, dataLength) = try dump.readLeavingData() {
                try order.check(f)
                // The cache refuses a write (memory limit...) with an error frame, unasked:
                // the dump must hear that reason, not a broken pipe.
                var pfd = pollfd(fd: cacheFd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 0) > 0 {
                    let e = try cache.expect()
                    guard e.kind == .error else { throw TransportError(peer: cache.peer, "unasked \(e.kind) frame") }
                    try dump.write(e)
                    log.error("connection \(number): the cache refused snapshot \(e.snapshot): \(e.text); closed")
                    return
                }
                if dataLength > 0 { try cache.forwardData(f, length: dataLength, from: dump, relay: relay) } else { try cache.write(f) }
                switch f.kind {
                case .complete, .info, .restore: try dump.write(try answer(cache, to: f))
                case .get:
                    while true {
                        let r = try answer(cache, to: f)
                        try dump.write(r)
                        if r.kind != .data { break }
                    }
                default: break
                }
            }
            if !order.unfinished.isEmpty { log.error("connection \(number): dump closed with snapshots \(order.unfinished) unfinished") }
        } catch {
            log.error("connection \(number): \(error); closed")
            try? dump.write(RemoteFrame(.error, snapshot: "-", payload: Array("image proxy: \(error)".utf8)))
        }
    }

    /// The cache's next frame, checked to answer `request`.
    func answer(_ cache: RemoteConnection, to request: RemoteFrame) throws -> RemoteFrame {
        let r = try cache.expect()
        guard r.snapshot == request.snapshot else { throw TransportError(peer: cache.peer, "answer for snapshot \(r.snapshot) to a \(request.kind) of \(request.snapshot)") }
        switch (request.kind, r.kind) {
        case (_, .ok), (_, .error): return r
        case (.get, .data), (.get, .end):
            guard r.name == request.name else { throw TransportError(peer: cache.peer, "image \(r.name) sent for \(request.name)") }
            return r
        default: throw TransportError(peer: cache.peer, "\(r.kind) frame in answer to \(request.kind)")
        }
    }
}
