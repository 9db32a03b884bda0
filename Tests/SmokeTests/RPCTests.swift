import Foundation
import Glibc
import XCTest
import ZDTMCore

/// `cryo swrk` driven as runtimes drive CRIU: pycriu's rpc_pb2 (CRIU's own Python messages, from
/// Debian's criu package) over a socketpair, on real processes. Each case checks the answer, the
/// NOTIFY callbacks, and what happened to the process.
final class RPCTests: XCTestCase {
    var h: CRHarness!
    var driver = ""

    override func setUpWithError() throws {
        h = try CRHarness.make(name)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
              (try? CRHarness.capture("/usr/bin/python3", ["-c", "import pycriu.rpc_pb2"]))?.0 == 0 else {
            print("\(name): skipped, /usr/bin/python3 cannot import pycriu (Debian's criu package; ci/deps.sh installs it)")
            throw XCTSkip("no pycriu")
        }
        driver = h.dir + "/driver.py"
        try Self.driverSource.write(toFile: driver, atomically: true, encoding: .utf8)
    }

    override func tearDown() { h?.remove() }

    struct Answer {
        var json: [String: Any]
        var success: Bool { json["success"] as? Bool ?? false }
        var error: String { json["errmsg"] as? String ?? "" }
        var scripts: [String] { (json["notes"] as? [[Any]] ?? []).compactMap { $0.first as? String } }
        var notePids: [Int] { (json["notes"] as? [[Any]] ?? []).compactMap { $0.last as? Int } }
    }

    /// One request through a fresh `cryo swrk` (as runc does: one swrk per request).
    func rpc(_ kind: String, _ args: [String] = []) throws -> Answer {
        let (code, out) = try CRHarness.capture("/usr/bin/python3", [driver, h.bin + "/cryo", kind] + args)
        let line = out.split(separator: "\n").last.map(String.init) ?? ""
        guard code == 0, let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            XCTFail("driver failed (\(code)): \(out)")
            throw XCTSkip("driver")
        }
        return Answer(json: obj)
    }

    func images(_ name: String) throws -> String {
        let d = h.dir + "/" + name
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func alive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0, let st = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !st.contains(") Z ")
    }

    func testVersionCheckFeatureCheck() throws {
        let v = try rpc("version")
        XCTAssertTrue(v.success, v.error)
        let ver = v.json["version"] as? [Any] ?? []
        XCTAssertEqual(ver.count, 3)
        XCTAssertEqual(ver.first as? Int, 3)
        XCTAssertGreaterThanOrEqual(ver.dropFirst().first as? Int ?? 0, 14, "runc wants 3.14 for the cgroup v2 freezer")
        XCTAssertEqual(ver.last as? String, "cryo")
        let c = try rpc("check")
        XCTAssertTrue(c.success, c.error)
        let f = try rpc("features")
        XCTAssertTrue(f.success, f.error)
        let feats = f.json["features"] as? [String: Bool] ?? [:]
        XCTAssertNotNil(feats["mem_track"])
        XCTAssertNotNil(feats["lazy_pages"])
        // runc reads `criu --version` the same way in older releases.
        let (code, out) = try h.cryo(["--version"])
        XCTAssertEqual(code, 0)
        XCTAssertTrue(out.hasPrefix("Version: 3."), out)
    }

    func testDumpAndRestoreAHostProcessWithNotifications() throws {
        let pid = try h.start("memhog00", args: ["8"])
        let d = try images("img")
        let dump = try rpc("dump", ["--images", d, "--pid", "\(pid)", "--set", "log_level=4", "--set", "log_file=dump.log", "--set", "notify_scripts=true"])
        XCTAssertTrue(dump.success, dump.error)
        XCTAssertEqual(dump.scripts, ["pre-dump", "post-dump"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/inventory.img"))
        XCTAssertTrue(((try? String(contentsOfFile: d + "/dump.log", encoding: .utf8)) ?? "").contains("dump done"), "log_file is written in the images folder")
        h.waitGone([pid])
        let rst = try rpc("restore", ["--images", d, "--set", "log_file=restore.log", "--set", "notify_scripts=true", "--set", "rst_sibling=true"])
        XCTAssertTrue(rst.success, rst.error)
        XCTAssertEqual(rst.json["pid"] as? Int, Int(pid), "the answer carries the restored pid")
        XCTAssertEqual(rst.scripts, ["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore", "post-resume"])
        XCTAssertEqual(Set(rst.notePids.dropFirst()), [Int(pid)])
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    func testLeaveRunning() throws {
        let pid = try h.start("memhog00", args: ["4"])
        let d = try images("img")
        let a = try rpc("dump", ["--images", d, "--pid", "\(pid)", "--set", "leave_running=true"])
        XCTAssertTrue(a.success, a.error)
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/inventory.img"))
        XCTAssertTrue(alive(pid), "leave_running: the process runs on")
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// runc's migration: a PRE_DUMP in one swrk, then a DUMP with parent_img and track_mem in
    /// another; the final images hold only what changed.
    func testPreDumpThenDumpWithParent() throws {
        // 32 MiB rewritten at 1 page per ms: a few MiB change between the two runs.
        let pid = try h.start("dirty00", args: ["32", "1"])
        let pre = try images("pre")
        let final = try images("final")
        let a = try rpc("pre-dump", ["--images", pre, "--pid", "\(pid)"])
        XCTAssertTrue(a.success, a.error)
        XCTAssertTrue(alive(pid))
        let b = try rpc("dump", ["--images", final, "--pid", "\(pid)", "--set", "parent_img=../pre", "--set", "track_mem=true"])
        XCTAssertTrue(b.success, b.error)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: final + "/parent"), "../pre")
        let preBytes = try h.pagesBytes(pre), finalBytes = try h.pagesBytes(final)
        XCTAssertGreaterThan(preBytes, 32 << 20)
        XCTAssertLessThan(finalBytes, preBytes / 4, "the final dump holds only the pages written since the pre-dump")
        print("rpc pre-dump \(preBytes) bytes of pages, final dump \(finalBytes)")
        h.waitGone([pid])
        let r = try rpc("restore", ["--images", final])
        XCTAssertTrue(r.success, r.error)
        XCTAssertEqual(try h.stop(pid, name: "dirty00"), "PASS")
    }

    /// Options cryo cannot honour are refused by their rpc.proto name, and the tree runs on.
    func testUnhonouredOptionsAreRefusedByName() throws {
        let pid = try h.start("memhog00", args: ["4"])
        let d = try images("img")
        let cases: [([String], String)] = [
            (["--set", "link_remap=true"], "link_remap"),
            (["--set", "tcp_close=true"], "tcp_close"),
            (["--set", "auto_dedup=true"], "auto_dedup"),
            (["--unknown-field", "99"], "field 99"),
        ]
        for (extra, field) in cases {
            let a = try rpc("dump", ["--images", d, "--pid", "\(pid)"] + extra)
            XCTAssertFalse(a.success, "\(field) was accepted")
            XCTAssertTrue(a.error.contains(field), "\(field): \(a.error)")
            XCTAssertTrue(alive(pid), "a refused dump leaves the process running (\(field))")
        }
        // file_locks is honoured now (CRIU's --file-locks), like the CLI option.
        let locks = try rpc("dump", ["--images", try images("locks"), "--pid", "\(pid)", "--set", "file_locks=true", "--set", "leave_running=true"])
        XCTAssertTrue(locks.success, locks.error)
        XCTAssertTrue(alive(pid))
        let noPid = try rpc("dump", ["--images", d])
        XCTAssertFalse(noPid.success)
        XCTAssertTrue(noPid.error.contains("pid"), noPid.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/inventory.img"))
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// freeze_cgroup (runc sends the container's freezer cgroup): cryo freezes with ptrace, so
    /// a process of the cgroup outside the tree is refused by pid, and the tree runs on.
    func testFreezeCgroupMustHoldOnlyTheTree() throws {
        let freezer = "/sys/fs/cgroup/freezer"
        guard FileManager.default.fileExists(atPath: freezer + "/cgroup.procs") else {
            print("\(name): skipped, no cgroup v1 freezer at \(freezer)")
            throw XCTSkip("no v1 freezer")
        }
        let cg = freezer + "/cryo-rpc-\(getpid())"
        try FileManager.default.createDirectory(atPath: cg, withIntermediateDirectories: false)
        defer { rmdir(cg) }
        let pid = try h.start("memhog00", args: ["4"])
        let other = try Subprocess.spawn("/bin/sleep", ["300"])
        defer { Subprocess.kill9(other); try? "\(other)\n".write(toFile: freezer + "/cgroup.procs", atomically: false, encoding: .utf8) }
        for p in [pid, other] { try "\(p)\n".write(toFile: cg + "/cgroup.procs", atomically: false, encoding: .utf8) }
        let d = try images("img")
        for kind in ["pre-dump", "dump"] {
            let a = try rpc(kind, ["--images", d, "--pid", "\(pid)", "--set", "freeze_cgroup=\(cg)"])
            XCTAssertFalse(a.success, kind)
            XCTAssertTrue(a.error.contains("pid \(other)") && a.error.contains("freeze cgroup"), a.error)
            XCTAssertTrue(alive(pid))
        }
        try "\(other)\n".write(toFile: freezer + "/cgroup.procs", atomically: false, encoding: .utf8)
        let ok = try rpc("dump", ["--images", d, "--pid", "\(pid)", "--set", "freeze_cgroup=\(cg)", "--set", "leave_running=true"])
        XCTAssertTrue(ok.success, ok.error)
        try "\(pid)\n".write(toFile: freezer + "/cgroup.procs", atomically: false, encoding: .utf8)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// A runtime that fails a callback fails the dump there: the tree is resumed unharmed.
    func testRefusedNotifyFailsTheDumpAndResumesTheTree() throws {
        let pid = try h.start("memhog00", args: ["4"])
        let d = try images("img")
        let a = try rpc("dump", ["--images", d, "--pid", "\(pid)", "--set", "notify_scripts=true", "--refuse", "post-dump"])
        XCTAssertFalse(a.success)
        XCTAssertTrue(a.error.contains("post-dump"), a.error)
        XCTAssertTrue(alive(pid))
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/inventory.img"))
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// PAGE_SERVER starts cryo's page server and answers its pid and port; a DUMP with ps sends
    /// the pages there.
    func testPageServerRequestThenDumpThroughIt() throws {
        let pid = try h.start("memhog00", args: ["8"])
        let srv = try images("server"), local = try images("local")
        let ps = try rpc("page-server", ["--images", srv, "--set", "log_file=ps.log"])
        XCTAssertTrue(ps.success, ps.error)
        let info = ps.json["ps"] as? [Int] ?? []
        XCTAssertEqual(info.count, 2)
        guard info.count == 2, info[1] > 0 else { return }
        let a = try rpc("dump", ["--images", local, "--pid", "\(pid)", "--set", "leave_running=true", "--ps", "127.0.0.1:\(info[1])"])
        XCTAssertTrue(a.success, a.error)
        XCTAssertGreaterThan(try h.pagesBytes(srv), 8 << 20, "the pages went to the page server's folder")
        XCTAssertEqual(try h.pagesBytes(local), 0)
        _ = try Subprocess.wait(Int32(info[0]), timeout: 30)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// `cryo service --address SOCK`: the same protocol on a listening socket.
    func testServiceAnswersOnItsSocket() throws {
        let sock = h.dir + "/cryo.sock"
        let svc = try Subprocess.spawn(h.bin + "/cryo", ["service", "--address", sock], output: h.dir + "/service.log")
        defer { Subprocess.kill9(svc) }
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: sock) { usleep(10_000) }
        let pid = try h.start("memhog00", args: ["4"])
        let d = try images("img")
        let v = try rpc("service-version", [sock])
        XCTAssertTrue(v.success, v.error)
        let a = try rpc("service-dump", [sock, "--images", d, "--pid", "\(pid)", "--set", "leave_running=true"])
        XCTAssertTrue(a.success, a.error)
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/inventory.img"))
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    static let driverSource = #"""
# Drives `cryo swrk` with pycriu's rpc_pb2 (CRIU's own Python messages), as a runtime does:
# one socketpair, one CriuReq per message, NOTIFY answered. Prints one JSON line per request.
import json, os, socket, subprocess, sys
sys.path.insert(0, '/usr/lib/python3/dist-packages')
import pycriu.rpc_pb2 as rpc

def session(cryo):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = subprocess.Popen([cryo, 'swrk', str(b.fileno())], pass_fds=[b.fileno()], stdin=subprocess.DEVNULL)
    b.close()
    return a, p

def call(sk, data, refuse=None):
    sk.send(data)
    notes = []
    while True:
        msg = sk.recv(1 << 20)
        if not msg:
            return None, notes
        resp = rpc.criu_resp()
        resp.ParseFromString(msg)
        if resp.type != rpc.NOTIFY:
            return resp, notes
        notes.append([resp.notify.script, resp.notify.pid])
        ack = rpc.criu_req()
        ack.type = rpc.NOTIFY
        ack.notify_success = resp.notify.script != refuse
        sk.send(ack.SerializeToString())

def opts_from(args, o):
    """--images DIR --pid N --set field=value (bool/int/str) --ext-mnt K:V --unknown-field N"""
    extra = b''
    i = 0
    while i < len(args):
        a = args[i]
        if a == '--images':
            o.images_dir_fd = os.open(args[i + 1], os.O_RDONLY | os.O_DIRECTORY); i += 2
        elif a == '--work':
            o.work_dir_fd = os.open(args[i + 1], os.O_RDONLY | os.O_DIRECTORY); i += 2
        elif a == '--pid':
            o.pid = int(args[i + 1]); i += 2
        elif a == '--set':
            k, v = args[i + 1].split('=', 1)
            f = o.DESCRIPTOR.fields_by_name[k]
            setattr(o, k, v == 'true' if f.type == f.TYPE_BOOL else int(v) if f.type in (f.TYPE_INT32, f.TYPE_UINT32) else v)
            i += 2
        elif a == '--ps':
            addr, port = args[i + 1].rsplit(':', 1)
            o.ps.address = addr; o.ps.port = int(port); i += 2
        elif a == '--ext-mnt':
            k, v = args[i + 1].split(':', 1)
            m = o.ext_mnt.add(); m.key = k; m.val = v; i += 2
        elif a == '--unknown-field':
            n = int(args[i + 1]); key = n << 3
            while key >= 0x80:
                extra += bytes([key & 0x7f | 0x80]); key >>= 7
            extra += bytes([key, 1]); i += 2
        else:
            raise SystemExit('unknown driver option ' + a)
    return extra

def encode(req, extra):
    if not extra:
        return req.SerializeToString()
    opts = req.opts.SerializeToString() + extra
    req.ClearField('opts')
    n = len(opts); ln = b''
    while n >= 0x80:
        ln += bytes([n & 0x7f | 0x80]); n >>= 7
    ln += bytes([n])
    return req.SerializeToString() + b'\x12' + ln + opts

def main():
    cryo, kind = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    service = None
    if kind.startswith('service-'):
        kind = kind[len('service-'):]
        service = args.pop(0)
    refuse = None
    if '--refuse' in args:
        j = args.index('--refuse'); refuse = args[j + 1]; del args[j:j + 2]
    req = rpc.criu_req()
    req.type = {'version': rpc.VERSION, 'check': rpc.CHECK, 'features': rpc.FEATURE_CHECK, 'dump': rpc.DUMP,
                'pre-dump': rpc.PRE_DUMP, 'restore': rpc.RESTORE, 'page-server': rpc.PAGE_SERVER}[kind]
    extra = b''
    if kind == 'features':
        req.features.mem_track = True
        req.features.lazy_pages = True
    elif kind not in ('version', 'check'):
        extra = opts_from(args, req.opts)
    if service:
        sk = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sk.connect(service)
        p = None
    else:
        sk, p = session(cryo)
    resp, notes = call(sk, encode(req, extra), refuse)
    sk.close()
    status = p.wait(timeout=300) if p else 0
    out = {'exit': status, 'notes': notes}
    if resp is None:
        out['success'] = False
        out['errmsg'] = 'no answer'
    else:
        out['success'] = resp.success
        out['type'] = rpc.criu_req_type.Name(resp.type)
        out['errmsg'] = resp.cr_errmsg
        if resp.HasField('version'):
            out['version'] = [resp.version.major_number, resp.version.minor_number, resp.version.name]
        if resp.HasField('features'):
            out['features'] = {'mem_track': resp.features.mem_track, 'lazy_pages': resp.features.lazy_pages}
        if resp.HasField('restore'):
            out['pid'] = resp.restore.pid
        if resp.HasField('ps'):
            out['ps'] = [resp.ps.pid, resp.ps.port]
    print(json.dumps(out))

main()
"""#
}
