import CKernel
import Engine
import Foundation
import Glibc
import Logging

/// Why a case failed; the runner turns it into the result's reason.
struct CaseFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

public final class Runner: @unchecked Sendable {
    let options: RunOptions
    let log = Logger(label: "zdtm")
    let proc = ProcReader()
    let lock = NSLock()
    private var results: [Int: CaseResult] = [:]
    private var stop = false
    private var next = 0
    /// Called as each case ends (console progress), from the case's thread.
    public var onResult: (@Sendable (CaseResult) -> Void)?

    public init(options: RunOptions) throws {
        self.options = options
        // Daemonized workloads (and restored trees) re-parent to us, so we can wait for them by pid.
        if ck_prctl(36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0) != 0 {
            throw SystemCallError(call: "prctl", errno: errno, context: "PR_SET_CHILD_SUBREAPER")
        }
    }

    /// Runs every case; exclusive ones alone, the rest up to `parallel` at a time. Results come
    /// back in `specs` order; cases not run after a failure (without keepGoing) are SKIP.
    public func run(_ specs: [CaseSpec]) -> [CaseResult] {
        let indexed = Array(specs.enumerated())
        runPool(indexed.filter { !$0.element.workload.exclusive }, width: max(1, options.parallel))
        runPool(indexed.filter { $0.element.workload.exclusive }, width: 1)
        return specs.indices.map { i in
            results[i] ?? CaseResult(spec: specs[i], outcome: .skip, reason: "not run: stopped at the first failure (use --keep-going)", seconds: 0)
        }
    }

    func runPool(_ specs: [(offset: Int, element: CaseSpec)], width: Int) {
        guard !specs.isEmpty else { return }
        next = 0
        let sequential = width == 1
        let worker: @Sendable () -> Void = { [self] in
            while true {
                lock.lock()
                if stop || next >= specs.count { lock.unlock(); break }
                let (index, spec) = specs[next]; next += 1
                lock.unlock()
                let r = runCase(spec, alone: sequential)
                lock.lock()
                results[index] = r
                if r.outcome == .fail && !options.keepGoing { stop = true }
                lock.unlock()
                onResult?(r)
            }
        }
        if sequential { worker(); return }
        let group = DispatchGroup()
        for _ in 0..<min(width, specs.count) {
            group.enter()
            Thread.detachNewThread { worker(); group.leave() }
        }
        group.wait()
    }

    /// Runs one case start to end. `alone` means no other case runs meanwhile, so any child
    /// zdtm still has afterwards is a stray of this case.
    public func runCase(_ spec: CaseSpec, alone: Bool = true) -> CaseResult {
        let t0 = Date()
        let w = spec.workload
        let dir = options.runDir + "/" + spec.dirName
        var commands: [RecordedCommand] = []
        var tree: [Int32] = []
        var sid: Int32 = 0
        var terminated = false
        let logger = log

        func finish(_ outcome: Outcome, _ reason: String) -> CaseResult {
            var outcome = outcome, reason = reason
            // A case that failed before its workload exited kills it: that is clean-up, not a leak.
            let strays = terminated ? reapStrays(tree: tree, sid: sid, all: alone, grace: true) : []
            if !terminated { _ = reapStrays(tree: tree, sid: sid, all: alone) }
            CgroupCleanup.remove(listedIn: dir + "/" + CgroupCleanup.listName)
            if !strays.isEmpty {
                let s = "stray process" + (strays.count > 1 ? "es " : " ") + strays.joined(separator: ", ")
                reason = outcome == .fail ? reason + "; " + s : s
                outcome = .fail
            }
            if let why = w.xfail[spec.mode.name] {
                if outcome == .fail { outcome = .xfail; reason += " (expected: \(why))" }
                else if outcome == .pass { reason = "passed although expected to fail: \(why)" }
            }
            let phases = Runner.phases(in: dir)
            let keep = options.keepImages == .always || (options.keepImages == .failed && outcome == .fail)
            if outcome == .fail || keep { writeRepro(dir: dir, commands: commands, reason: reason) }
            if !keep { try? FileManager.default.removeItem(atPath: dir) }
            var r = CaseResult(spec: spec, outcome: outcome, reason: reason, seconds: Date().timeIntervalSince(t0),
                               dir: keep ? dir : nil, commands: commands)
            r.phases = phases
            logger.info("\(spec.id): \(outcome.rawValue) \(reason)")
            return r
        }

        do {
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            // A program that changes its uid (.desc flag suid) still renames its outfile into
            // place at exit, as another user: its folder is everyone's, the run folder passable.
            if w.desc?.flags.contains("suid") == true {
                chmod(dir, 0o777)
                let parent = (dir as NSString).deletingLastPathComponent
                var st = stat()
                if stat(parent, &st) == 0 { chmod(parent, (st.st_mode & 0o7777) | 0o011) }
            }
        } catch { return finish(.fail, "cannot create \(dir): \(error.localizedDescription)") }

        let binary = w.externalPath ?? (options.binDir + "/" + w.name)
        guard access(binary, X_OK) == 0 else {
            return finish(.fail, "no executable workload at \(binary) (build it, or pass --bin-dir)")
        }
        let pidfile = dir + "/pid", outfile = dir + "/out"
        let args = ["--pidfile=\(pidfile)", "--outfile=\(outfile)"] + w.args
        commands.append(RecordedCommand(argv: [binary] + args, log: dir + "/start.log"))

        // Start: the starter exits once its daemon child is set up.
        let starter: Int32
        do {
            starter = try spec.flavour.start(binary: binary, args: args, dir: dir, log: dir + "/start.log")
            log.debug("\(spec.id): started \(binary) as \(starter) in \(dir)")
        } catch { return finish(.fail, "start: \(error)") }
        do {
            guard let st = try Subprocess.wait(starter, timeout: w.timeout) else {
                Subprocess.kill9(starter)
                // The daemon may be up without the starter having exited; pick it up for reaping.
                if let p = readPid(pidfile) { tree = [p]; sid = p }
                return finish(.fail, "timeout: set-up did not finish within \(Int(w.timeout)) s" + outputs(outfile))
            }
            if Subprocess.exitCode(st) != 0 {
                if let p = readPid(pidfile) { tree = [p]; sid = p }
                return finish(.fail, "set-up failed (\(Subprocess.describe(st)))" + outputs(outfile))
            }
        } catch { return finish(.fail, "start: \(error)") }
        guard let pid = readPid(pidfile) else {
            return finish(.fail, "set-up exited 0 but \(pidfile) holds no pid" + outputs(outfile))
        }
        tree = [pid]; sid = pid
        log.debug("\(spec.id): daemon \(pid)")

        // Record, take through the mode, compare; N times.
        let before: VisibleState
        do {
            before = try StateRecorder.record(root: pid, proc: proc)
        } catch ProcError.gone {
            return finish(.fail, "workload \(pid) exited right after set-up" + outputs(outfile))
        } catch { return finish(.fail, "cannot record state: \(error)") }
        tree = before.hostPids
        sid = before.processes.first { $0.hostPid == pid }?.hostSid ?? pid
        var current = pid
        for i in 1...max(1, spec.iterations) {
            let ctx = CaseContext(workload: w, flavour: spec.flavour.name, dir: dir, cryo: options.cryo, pid: current, iteration: i)
            ctx.preDumps = options.preDumps
            ctx.incremental = options.incremental
            let modeError: Error?
            do { try spec.mode.checkpointRestore(ctx); modeError = nil } catch { modeError = error }
            commands += ctx.commands
            current = ctx.pid
            // A tree restored under pids the check refused is not in `tree` nor in its session.
            for r in ctx.restoredRoots { tree += PlainMode.treePids(r).filter { !tree.contains($0) } }
            if let modeError { return finish(.fail, "iteration \(i): \(spec.mode.name): \(modeError)") }
            let after: VisibleState
            do { after = try StateRecorder.record(root: current, proc: proc) } catch {
                return finish(.fail, "iteration \(i): state after \(spec.mode.name): \(error)" + outputs(outfile))
            }
            tree = Array(Set(tree).union(after.hostPids)).sorted()
            let diffs = options.compareState ? StateDiff.compare(before, after, ignore: w.ignore) : []
            if !diffs.isEmpty {
                for d in diffs { log.warning("\(spec.id): \(d)") }
                return finish(.fail, "iteration \(i): state changed: " + diffs.prefix(5).joined(separator: "; ")
                              + (diffs.count > 5 ? " (+\(diffs.count - 5) more, see -v2)" : ""))
            }
        }

        // Ask the workload.
        kill(current, SIGTERM)
        let end: Int32
        do {
            guard let st = try Subprocess.wait(current, timeout: w.timeout) else {
                Subprocess.kill9(current)
                return finish(.fail, "timeout: still running \(Int(w.timeout)) s after SIGTERM, killed" + outputs(outfile))
            }
            end = st
            terminated = true
        } catch { return finish(.fail, "after SIGTERM: \(error)") }
        let text = readFile(outfile) ?? ""
        let passed = Outfile.passed(text), result = Outfile.reason(text)
        if passed && Subprocess.exitCode(end) == 0 { return finish(.pass, "") }
        if passed { return finish(.fail, "PASS in outfile but \(Subprocess.describe(end))" + outputs(outfile, result: false)) }
        if result.isEmpty { return finish(.fail, "no result in outfile (\(Subprocess.describe(end)))" + outputs(outfile, result: false)) }
        return finish(.fail, result + outputs(outfile, result: false))
    }

    /// Kills and reaps what the case left: its recorded tree, anything in its session, and
    /// (when `all`) any child of zdtm. Returns "PID (comm)" for each live one; zombies are
    /// only reaped.
    func reapStrays(tree: [Int32], sid: Int32, all: Bool, grace wait: Bool = false) -> [String] {
        var strays: [String] = []
        var found: Set<Int32> = []
        // A process outside the tree that the program talks with (CRIU's test_ext_init, an
        // --ext-unix-sk peer) ends on the program's last word: it is given a moment to.
        var grace = wait ? 100 : 0
        for _ in 0..<(50 + grace) {
            // As subreaper, every process of the workload is our descendant; looking only there
            // keeps a recycled pid of someone else's process out.
            var candidates: Set<Int32> = []
            let treeSet = Set(tree)
            for p in descendants(of: getpid()) {
                if all || treeSet.contains(p) { candidates.insert(p); continue }
                if sid > 0, let st = try? proc.stat(pid: p), st.session == sid { candidates.insert(p) }
            }
            if candidates.isEmpty { break }
            if grace > 0 && candidates.contains(where: { (try? proc.stat(pid: $0))?.isZombie == false }) {
                grace -= 1
                for p in candidates { var status: Int32 = 0; _ = waitpid(p, &status, WNOHANG) }
                usleep(10_000)
                continue
            }
            grace = 0
            log.debug("stray check: \(candidates.sorted())")
            for p in candidates.sorted() {
                guard let st = try? proc.stat(pid: p) else { continue }
                if !st.isZombie && found.insert(p).inserted {
                    strays.append("\(p) (\(st.comm))")
                    kill(p, SIGKILL)
                }
                // Only our own children can be reaped here; killed grandchildren re-parent to us.
                var status: Int32 = 0
                _ = waitpid(p, &status, WNOHANG)
            }
            usleep(10_000)
        }
        return strays
    }

    func descendants(of root: Int32) -> [Int32] {
        var out: [Int32] = []
        var queue = (try? proc.allChildren(pid: root)) ?? []
        while !queue.isEmpty {
            let p = queue.removeFirst()
            out.append(p)
            queue += (try? proc.allChildren(pid: p)) ?? []
        }
        return out
    }

    /// The workload's own words: O (its result) and the tail of O.log (its stdout/stderr).
    func outputs(_ outfile: String, result: Bool = true) -> String {
        var s = ""
        if result, let o = readFile(outfile)?.trimmingCharacters(in: .whitespacesAndNewlines), !o.isEmpty {
            s += "; out: " + o.split(separator: "\n").prefix(3).joined(separator: " | ")
        }
        if let l = readFile(outfile + ".log")?.trimmingCharacters(in: .whitespacesAndNewlines), !l.isEmpty {
            s += "; out.log: " + l.split(separator: "\n").suffix(3).joined(separator: " | ")
        }
        return s
    }

    /// Sums the "pid N timing: phase 1.23ms, ..." lines of every cryo log under `dir`, keyed by
    /// what ran ("dump: memory", "restore: files").
    static func phases(in dir: String) -> [String: Double] {
        var out: [String: Double] = [:]
        guard let walk = FileManager.default.enumerator(atPath: dir) else { return out }
        for case let rel as String in walk where rel.hasSuffix(".log") {
            let name = (rel as NSString).lastPathComponent
            let what = name.hasPrefix("restore") ? "restore" : name.hasPrefix("pre-dump") ? "pre-dump" : name.hasPrefix("dump") ? "dump" : nil
            guard let what, let text = try? String(contentsOfFile: dir + "/" + rel, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                guard let r = line.range(of: " timing: ") else { continue }
                for part in line[r.upperBound...].split(separator: ",") {
                    let f = part.split(separator: " ")
                    guard f.count == 2, f[1].hasSuffix("ms"), let ms = Double(f[1].dropLast(2)) else { continue }
                    out[what + ": " + f[0], default: 0] += ms
                }
            }
        }
        return out
    }

    /// DIR/repro.sh: the exact commands of a failed case, for running by hand.
    func writeRepro(dir: String, commands: [RecordedCommand], reason: String) {
        var text = "#!/bin/sh\n# zdtm case failed: \(reason.replacingOccurrences(of: "\n", with: " "))\n"
        text += "# Run as root; zdtm ran these in \(dir) (the workload daemonizes, then cryo takes it).\ncd \(RecordedCommand.quote(dir)) || exit 1\n"
        if commands.contains(where: { $0.argv.contains("--track-store") }) {
            // The track store was a socket zdtm held; a shell has none, so say how to get one.
            text += "# --track-store 3: zdtm passed cryo a unix datagram socket connected to itself as fd 3, e.g.\n"
            text += "#   python3 -c 'import socket,os; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(b\"\"); s.connect(s.getsockname()); os.dup2(s.fileno(),3); os.execvp(\"sh\",[\"sh\",\"repro.sh\"])'\n"
        }
        for c in commands { text += c.shell + "\n" }
        try? text.write(toFile: dir + "/repro.sh", atomically: true, encoding: .utf8)
    }

    func readPid(_ path: String) -> Int32? {
        readFile(path).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }.flatMap { $0 > 0 ? $0 : nil }
    }

    func readFile(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
}
