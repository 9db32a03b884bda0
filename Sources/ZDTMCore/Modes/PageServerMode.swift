import CKernel
import Engine
import Foundation
import Glibc

/// Pre-copy through a page server, as a migration does it: the server runs in a network
/// namespace of its own, reached over a veth pair from a second namespace; both namespaces,
/// the veth and its addresses exist only for the case and go with it, failed or not. cryo
/// dump runs where the workload is (it must see its sockets); its connection to the server is
/// made inside the client namespace by zdtm and handed over (--ps-socket), so the host's
/// network is never touched. --pre N pre-dumps go first (each through its own server with the
/// previous snapshot as parent), then the final dump; the server writes its pagemaps and pages
/// into the same images folder as the dump (as CRIU's zdtm does), and restore reads it.
public struct PageServerMode: CRMode {
    public let name = "page-server"
    public let summary = "N pre-dumps (--pre, default 2) and the final dump through cryo page-server in its own netns over a veth, restore"
    public init() {}

    static let serverAddress = "10.231.0.1"
    static let clientAddress = "10.231.0.2"

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let net = try NetnsPair(tag: "\(getpid())-\(ctx.workload.name)-\(ctx.iteration)-\(UInt16.random(in: 0...UInt16.max))")
        defer { net.remove() }
        let store = try TrackStoreHolder()
        var prev: String?
        for n in 0...max(0, ctx.preDumps) {
            let final = n == max(0, ctx.preDumps)
            let label = final ? "dump" : "pre\(n + 1)"
            let images = try ctx.imagesDir(label)
            let server = try PageServerProcess(ctx: ctx, net: net, images: images, label: label, prev: prev.map { "../" + $0 })
            defer { server.stop() }
            let sock = try net.connectFromClient(port: server.port)
            defer { close(sock) }
            let psArgs = ["--page-server", "--ps-socket", String(Subprocess.passedFd + 1)] + store.arg
            let prevArgs = prev.map { ["--prev-images-dir", "../" + $0] } ?? []
            if final {
                try ctx.dump(images: images, extra: psArgs + ["--track-mem"] + prevArgs, label: "final", passFd: store.fd, moreFds: [sock])
            } else {
                try ctx.cryo(["pre-dump", "-t", String(ctx.pid), "-D", images, "-v4", "-o", "pre-dump-\(label).log"] + psArgs + prevArgs,
                             log: "\(name)-\(ctx.iteration)-\(label)-cli", passFd: store.fd, moreFds: [sock])
            }
            try server.waitDone()
            prev = "img-\(ctx.iteration)-\(label)"
            if !final { usleep(50_000) }
        }
        try PlainMode.waitGone(ctx.dumpedTree)
        try ctx.restore(images: try ctx.imagesDir("dump"))
    }
}

/// Two network namespaces joined by a veth pair with a private /30 on it. Addresses may be
/// the same for every pair: each pair is a network of its own.
final class NetnsPair {
    let server: String
    let client: String
    let serverAddress: String
    private var made: [String] = []

    /// `prefix` and the addresses let another mode (remote: zdtm-rm, 10.232.0.0/24) use its own.
    init(tag: String, prefix: String = "zdtm-ps", serverAddress: String = PageServerMode.serverAddress,
         clientAddress: String = PageServerMode.clientAddress, mask: Int = 30) throws {
        let safe = String(tag.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }.suffix(40))
        server = "\(prefix)-\(safe)-s"
        client = "\(prefix)-\(safe)-c"
        self.serverAddress = serverAddress
        do {
            for ns in [server, client] { try NetnsPair.ip(["netns", "add", ns]); made.append(ns) }
            try NetnsPair.ip(["-n", server, "link", "add", "ps0", "type", "veth", "peer", "name", "ps1", "netns", client])
            try NetnsPair.ip(["-n", server, "addr", "add", serverAddress + "/\(mask)", "dev", "ps0"])
            try NetnsPair.ip(["-n", client, "addr", "add", clientAddress + "/\(mask)", "dev", "ps1"])
            for (ns, dev) in [(server, "ps0"), (client, "ps1")] {
                try NetnsPair.ip(["-n", ns, "link", "set", "lo", "up"])
                try NetnsPair.ip(["-n", ns, "link", "set", dev, "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    /// Deleting the namespaces takes the veth and its addresses with them.
    func remove() {
        for ns in made { try? NetnsPair.ip(["netns", "del", ns]) }
        made = []
    }

    static func ip(_ args: [String]) throws {
        let log = NSTemporaryDirectory() + "zdtm-ip-\(UUID().uuidString).log"
        defer { unlink(log) }
        let st = try Subprocess.run("/usr/sbin/ip", args, log: log, timeout: 30)
        guard Subprocess.exitCode(st) == 0 else {
            let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw ModeError.check("ip \(args.joined(separator: " ")) failed: \(out.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// A TCP connection to the server made from inside the client namespace (one thread
    /// enters it and leaves again); the socket stays in that namespace wherever it is passed.
    func connectFromClient(port: UInt16) throws -> Int32 {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        let path = "/run/netns/" + client
        let address = serverAddress
        let t = Thread {
            defer { done.signal() }
            let own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
            let ns = open(path, O_RDONLY | O_CLOEXEC)
            defer { if own >= 0 { close(own) }; if ns >= 0 { close(ns) } }
            let clone_newnet = 0x4000_0000
            guard own >= 0, ns >= 0, ck_syscall6(308 /* setns */, Int(ns), clone_newnet, 0, 0, 0, 0) == 0 else {
                box.error = ModeError.check("cannot enter network namespace \(path): \(String(cString: strerror(errno)))")
                return
            }
            do { box.fd = try TCP.connect(address: address, port: port) } catch { box.error = error }
            // Back home, or the thread (reused by no one, but still) would stay in the namespace.
            _ = ck_syscall6(308, Int(own), clone_newnet, 0, 0, 0, 0)
        }
        t.start()
        done.wait()
        if let e = box.error { throw e }
        return box.fd
    }

    final class ResultBox: @unchecked Sendable { var fd: Int32 = -1; var error: Error? }
}

/// `cryo page-server` for one snapshot, inside the server namespace.
final class PageServerProcess {
    let pid: Int32
    let port: UInt16
    let out: String
    private var reaped = false

    init(ctx: CaseContext, net: NetnsPair, images: String, label: String, prev: String?, lazy: Bool = false) throws {
        out = ctx.dir + "/page-server-\(ctx.iteration)-\(label).out"
        var args = ["--net=/run/netns/" + net.server, ctx.cryo, "page-server", "-D", images, "--address", PageServerMode.serverAddress,
                    "--port", "0", "-v4", "-o", ctx.dir + "/page-server-\(ctx.iteration)-\(label).log"]
        if let prev { args += ["--prev-images-dir", prev] }
        if lazy { args.append("--lazy-pages") }
        // The port is read from the first line: a second attempt of the same step (a fault
        // mode's retry) must not read the first one's.
        unlink(out)
        pid = try Subprocess.spawn("/usr/bin/nsenter", args, cwd: ctx.dir, output: out)
        var got: UInt16?
        for _ in 0..<1000 {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { got = UInt16(line); break }
            if let st = try? Subprocess.wait(pid, timeout: 0) {
                reaped = true
                throw ModeError.check("page server exited (\(Subprocess.describe(st))): \(text)")
            }
            usleep(10_000)
        }
        guard let got else { Subprocess.kill9(pid); reaped = true; throw ModeError.check("page server printed no port within 10 s (\(out))") }
        port = got
    }

    /// The server ends by itself once the dump's session completed.
    func waitDone() throws {
        guard let st = try Subprocess.wait(pid, timeout: 30) else {
            throw ModeError.check("page server \(pid) still running 30 s after the dump (\(out))")
        }
        reaped = true
        guard Subprocess.exitCode(st) == 0 else { throw ModeError.check("page server \(Subprocess.describe(st)) (\(out))") }
    }

    func stop() {
        if !reaped { Subprocess.kill9(pid); reaped = true }
    }
}
