import Foundation
import Glibc
import Logging
import SwiftProtobuf

/// The version cryo answers VERSION and `--version` with: the CRIU release whose rpc.proto and
/// command line it speaks (runc requires at least 3.0, and 3.14 for the cgroup v2 freezer).
public enum RPCVersion {
    public static let major: Int32 = 3
    public static let minor: Int32 = 17
    public static let name = "cryo"
    /// CRIU's `criu --version` text, which runtimes parse.
    public static var text: String { "Version: \(major).\(minor)" }
}

public enum RPCError: Error, CustomStringConvertible {
    case io(call: String, errno: Int32)
    case malformed(String)
    /// An option cryo cannot honour (yet), or a wrong value, named by its rpc.proto field.
    case badOption(field: String, reason: String)
    case unsupported(String)
    case notify(script: String, reason: String)

    public var description: String {
        switch self {
        case .io(let c, let e): return "rpc socket: \(c): \(String(cString: strerror(e)))"
        case .malformed(let w): return "rpc: \(w)"
        case .badOption(let f, let r): return "option \(f): \(r)"
        case .unsupported(let w): return "rpc: \(w)"
        case .notify(let s, let r): return "notify \(s): \(r)"
        }
    }
}

/// The CLI's own parsing, which RPC requests go through (cryo's commands live in the cryo
/// target): the words of RPCCommandLine become the same requests `cryo dump` etc. build.
public protocol RPCCommandParser: Sendable {
    func dumpRequest(_ args: [String]) throws -> DumpRequest
    func preDumpRequest(_ args: [String]) throws -> PreDumpRequest
    func restoreRequest(_ args: [String]) throws -> RestoreRequest
    func pageServerOptions(_ args: [String]) throws -> PageServerOptions
    /// The parse error's text (argument-parser's message: "Unknown option '--x'").
    func message(for error: Error) -> String
}

/// One connection of CRIU's RPC: `cryo swrk FD` (a socket inherited from the runtime) or one
/// accepted by `cryo service`. Each SOCK_SEQPACKET message is one CriuReq or CriuResp.
public final class RPCSession: @unchecked Sendable {
    let fd: Int32
    let parser: RPCCommandParser
    /// The caller: its fds (images_dir_fd, work_dir_fd) are reached through /proc/PEER/fd.
    public let peer: Int32
    var logReady = false
    var log = Logger(label: "rpc")

    public init(fd: Int32, parser: RPCCommandParser) throws {
        self.fd = fd
        self.parser = parser
        guard let p = TrackKeeper.peer(fd) else { throw RPCError.io(call: "SO_PEERCRED", errno: errno) }
        peer = p.pid
    }

    /// Serves requests until the caller closes, or after one that did not ask keep_open (a
    /// PRE_DUMP waits for the next PRE_DUMP or the final DUMP, as CRIU's does). Returns the
    /// exit status: 0 when every request succeeded.
    public func serve() -> Int32 {
        var failed = false
        var preDumping = false
        while true {
            let req: Rpc_CriuReq
            do {
                guard let r = try receive() else { return failed ? 1 : 0 }
                req = r
            } catch {
                logOnce(nil)
                log.error("\(error)")
                return 1
            }
            logOnce(req.hasOpts ? req.opts : nil)
            let ok = handle(req)
            failed = failed || !ok
            if req.type == .preDump && ok { preDumping = true; continue }
            if !(preDumping && req.type == .preDump) && !req.keepOpen { return failed ? 1 : 0 }
        }
    }

    /// Answers one request; false if it failed (the answer says why).
    func handle(_ req: Rpc_CriuReq) -> Bool {
        var resp = Rpc_CriuResp()
        resp.type = req.type
        resp.success = true
        do {
            let unknown = Self.unknownFields(req)
            if !unknown.isEmpty { throw RPCError.badOption(field: "field " + unknown.map(String.init).joined(separator: ","), reason: "not in the rpc.proto cryo speaks") }
            switch req.type {
            case .version:
                var v = Rpc_CriuVersion()
                v.majorNumber = RPCVersion.major
                v.minorNumber = RPCVersion.minor
                v.name = RPCVersion.name
                resp.version = v
            case .check:
                let missing = KernelCheck.run().filter { $0.required && !$0.available }
                if !missing.isEmpty { throw RPCError.unsupported("kernel lacks " + missing.map { "\($0.name) (\($0.detail))" }.joined(separator: "; ")) }
            case .featureCheck:
                resp.features = featureCheck(req.features)
            case .dump:
                let (line, hook) = try commandLine(req, kind: .dump)
                var r = try parse(line) { try parser.dumpRequest($0) }
                r.actionHook = hook
                try Dumper(r).run()
                resp.dump = Rpc_CriuDumpResp()
            case .preDump:
                let (line, _) = try commandLine(req, kind: .preDump)
                try PreDumper(try parse(line) { try parser.preDumpRequest($0) }).run()
            case .restore:
                let (line, hook) = try commandLine(req, kind: .restore)
                var r = try parse(line) { try parser.restoreRequest($0) }
                r.actionHook = hook
                r.detach = true  // the runtime owns the tree from here
                var rr = Rpc_CriuRestoreResp()
                rr.pid = try Restorer(r).run().pid
                resp.restore = rr
            case .pageServer:
                resp.ps = try startPageServer(req)
            case .waitPid:
                var st: Int32 = 0
                guard waitpid(Int32(bitPattern: req.pid), &st, 0) > 0 else { throw RPCError.io(call: "waitpid \(req.pid)", errno: errno) }
                resp.status = st
            default:
                throw RPCError.unsupported("request type \(req.type) (\(req.type.rawValue)) is not served by cryo")
            }
        } catch {
            resp.success = false
            resp.crErrmsg = "\(error)"
            if let e = error as? SystemCallError { resp.crErrno = e.errno }
            log.error("\(req.type) failed: \(error)")
        }
        do { try send(resp) } catch { log.error("\(error)"); return false }
        return resp.success
    }

    /// The request's options as CLI words, and the notify hook when the caller asked for them.
    func commandLine(_ req: Rpc_CriuReq, kind: RPCCommandLine.Kind) throws -> (RPCCommandLine, ActionHook?) {
        guard req.hasOpts else { throw RPCError.malformed("\(req.type) without opts") }
        var line = try RPCCommandLine(req.opts, kind: kind, peer: peer)
        if req.opts.hasConfigFile { try line.appendConfigFile(req.opts.configFile) }
        log.info("\(req.type) as: cryo \(line.arguments.joined(separator: " "))")
        guard req.opts.notifyScripts else { return (line, nil) }
        let hook: ActionHook = { [self] script, pid in try notify(script.rawValue, pid: pid) }
        return (line, hook)
    }

    /// Parses with the CLI; a word it refuses is answered naming the rpc.proto field.
    func parse<R>(_ line: RPCCommandLine, _ body: ([String]) throws -> R) throws -> R {
        do { return try body(line.arguments) } catch {
            let msg = parser.message(for: error)
            guard let field = line.field(namedIn: msg) else { throw RPCError.malformed("options refused: \(msg)") }
            throw RPCError.badOption(field: field, reason: "cryo cannot honour it yet (\(msg))")
        }
    }

    /// CRIU's NOTIFY: tell the caller which action point was reached and wait for its answer.
    func notify(_ script: String, pid: Int32) throws {
        var resp = Rpc_CriuResp()
        resp.type = .notify
        resp.success = true
        var n = Rpc_CriuNotify()
        n.script = script
        if pid > 0 { n.pid = pid }
        resp.notify = n
        log.debug("notify \(script) (pid \(pid))")
        try send(resp)
        guard let ack = try receive() else { throw RPCError.notify(script: script, reason: "the caller closed the connection") }
        guard ack.type == .notify, ack.notifySuccess else {
            throw ActionError.refused(script: script, reason: "it answered \(ack.type) with notify_success \(ack.notifySuccess)")
        }
    }

    func featureCheck(_ asked: Rpc_CriuFeatures) -> Rpc_CriuFeatures {
        let results = KernelCheck.run()
        func has(_ name: String) -> Bool { results.contains { $0.name == name && $0.available } }
        var f = Rpc_CriuFeatures()
        if asked.hasMemTrack { f.memTrack = has("dirty tracking") }
        if asked.hasLazyPages { f.lazyPages = results.contains { $0.name.hasPrefix("userfaultfd") && $0.available } }
        if asked.hasPidfdStore { f.pidfdStore = false }  // pidfd_store_sk is refused
        return f
    }

    /// CRIU's PAGE_SERVER: a page server in a child, answered with its pid and port.
    func startPageServer(_ req: Rpc_CriuReq) throws -> Rpc_CriuPageServerInfo {
        let (line, _) = try commandLine(req, kind: .pageServer)
        let server = try PageServer(try parse(line) { try parser.pageServerOptions($0) })
        let child = fork()
        if child < 0 { throw RPCError.io(call: "fork", errno: errno) }
        if child == 0 {
            close(fd)
            // It outlives swrk: the caller's stdio (a pipe it reads to EOF) is not its to hold.
            let null = open("/dev/null", O_RDWR)
            if null >= 0 { for std: Int32 in 0...2 { dup2(null, std) }; if null > 2 { close(null) } }
            exit(server.serve())
        }
        var ps = Rpc_CriuPageServerInfo()
        ps.pid = child
        ps.port = Int32(server.port)
        return ps
    }

    /// Logging follows the first request's log_file (relative to the work dir, else the images
    /// dir) and log_level; swift-log is set up once per process.
    func logOnce(_ opts: Rpc_CriuOpts?) {
        guard !logReady else { return }
        logReady = true
        var file: String?
        if let o = opts, o.hasLogFile, !o.logToStderr {
            if o.logFile.hasPrefix("/") { file = o.logFile } else {
                let dirFd = o.hasWorkDirFd ? o.workDirFd : o.imagesDirFd
                if let dir = try? RPCCommandLine.callerDir(peer: peer, fd: dirFd, field: "work_dir_fd") { file = dir + "/" + o.logFile }
            }
        }
        try? CryoLog.bootstrap(verbosity: Int(opts?.logLevel ?? 2), file: file)
        log = Logger(label: "rpc")
    }

    // MARK: messages

    func receive() throws -> Rpc_CriuReq? {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var n: Int
        repeat { n = recv(fd, &buf, buf.count, Int32(MSG_TRUNC)) } while n < 0 && errno == EINTR
        if n < 0 { throw RPCError.io(call: "recv", errno: errno) }
        if n == 0 { return nil }
        if n > buf.count { throw RPCError.malformed("a request of \(n) bytes (at most \(buf.count))") }
        do {
            return try Rpc_CriuReq(serializedBytes: Array(buf[0..<n]))
        } catch {
            throw RPCError.malformed("a request of \(n) bytes that is not a CriuReq: \(error)")
        }
    }

    func send(_ resp: Rpc_CriuResp) throws {
        let bytes: [UInt8] = try resp.serializedBytes()
        var n: Int
        repeat { n = Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) } while n < 0 && errno == EINTR
        if n < 0 { throw RPCError.io(call: "send", errno: errno) }
    }

    /// Field numbers the request carries that cryo's rpc.proto lacks (a newer CRIU's options).
    static func unknownFields(_ req: Rpc_CriuReq) -> [Int] {
        var out = fieldNumbers(req.unknownFields.data)
        if req.hasOpts { out += fieldNumbers(req.opts.unknownFields.data) }
        return out
    }

    static func fieldNumbers(_ data: Data) -> [Int] {
        guard !data.isEmpty else { return [] }
        var out: [Int] = []
        var i = data.startIndex
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < data.endIndex, shift < 64 {
                let b = data[i]; i += 1
                v |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < data.endIndex, let key = varint() {
            out.append(Int(key >> 3))
            switch key & 7 {
            case 0: _ = varint()
            case 1: i += 8
            case 2: if let l = varint() { i += Int(l) }
            case 5: i += 4
            default: return out
            }
        }
        return out
    }
}
