import ArgumentParser
import Engine
import Foundation

/// Options every subcommand shares, named as CRIU names them.
struct LogOptions: ParsableArguments {
    @Option(name: .customShort("v", allowingJoined: true), help: "Verbosity 0..4 (-v4 is most verbose).")
    var verbosity: Int = 2

    @Option(name: [.customShort("o"), .customLong("log-file")], help: "Write the log to FILE instead of stderr.")
    var logFile: String?

    @Option(name: [.customShort("W"), .customLong("work-dir")], help: "Where a relative -o FILE and lazy-pages.socket go (default: the images folder), as in CRIU.")
    var workDir: String?

    func bootstrap() throws {
        try CryoLog.bootstrap(verbosity: verbosity, file: logFile)
    }
}

@main
struct Cryo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cryo",
        abstract: "Checkpoint/restore in userspace for Linux process trees.",
        version: RPCVersion.text,
        subcommands: [Check.self, Dump.self, PreDump.self, Restore.self, Dedup.self, Track.self, PageServerCmd.self, LazyPages.self, ImageTool.self, ImageCacheCmd.self, ImageProxyCmd.self, MigrateCmd.self, MigrateReceiveCmd.self, Swrk.self, Service.self]
    )
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report whether the kernel offers what cryo needs (one line per feature).")

    @OptionGroup var log: LogOptions

    func run() throws {
        try log.bootstrap()
        let results = KernelCheck.run()
        let width = results.map(\.name.count).max() ?? 20
        var missing: [FeatureResult] = []
        for r in results {
            let state = r.available ? "yes" : (r.required ? "NO (required)" : "no")
            print("\(r.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(state.padding(toLength: 14, withPad: " ", startingAt: 0))  \(r.detail)")
            if r.required && !r.available { missing.append(r) }
        }
        print(TrackKeeper.checkLine(width: width))
        if missing.isEmpty {
            print("Looks good.")
        } else {
            print("Missing for dump/restore: " + missing.map { "\($0.name) (\($0.detail))" }.joined(separator: "; "))
            throw ExitCode(1)
        }
    }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checkpoint a process tree into an images directory.",
        discussion: "Without --leave-running or --leave-stopped the tree is killed after a successful dump. A failed dump resumes the tree untouched.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("t"), .customLong("tree")], help: "Root pid of the tree to dump.") var tree: Int32
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "Where to write the images.") var imagesDir: String?
    @OptionGroup var stream: StreamDumpOptions
    @Flag(name: [.customShort("R"), .customLong("leave-running")], help: "Let the tree run on after the dump.") var leaveRunning = false
    @Flag(name: [.customShort("s"), .customLong("leave-stopped")], help: "Leave the tree stopped (SIGSTOP) after the dump.") var leaveStopped = false
    @Flag(name: .customLong("track-mem"), help: "Arm dirty-page tracking for a later incremental snapshot.") var trackMem = false
    @Option(name: .customLong("prev-images-dir"), help: "The previous snapshot (relative to -D): write only pages changed since.") var prevImagesDir: String?
    @Option(name: .customLong("track-store"), help: "fd of a unix datagram socket (yours) that holds dirty tracking between runs.") var trackStore: Int32?
    @OptionGroup var pageServer: PageServerClientOptions
    @Flag(name: [.customShort("j"), .customLong("shell-job")], help: "The tree is a job of a shell: its terminal fds are the shell's, restored with restore --shell-job.") var shellJob = false
    @Flag(name: .customLong("splice-pages"), inversion: .prefixedNo, help: "To a page server, a stream or the image proxy: the frozen tasks splice their pages out (no copy; the default). --no-splice-pages copies them out.") var splicePages = true
    @OptionGroup var remote: RemoteDumpOptions
    @OptionGroup var cgroups: CgroupOptions
    @Flag(name: .customLong("lazy-pages"), help: "Not supported (CRIU's post-copy from the frozen tree); see docs/LAZY.md for the alternative.") var lazyPages = false
    @OptionGroup var network: NetworkOptions
    @OptionGroup var runtime: RuntimeDumpOptions
    @OptionGroup var criuOnly: CriuRefusedOptions

    func validate() throws {
        try criuOnly.check()
        if leaveRunning && leaveStopped { throw ValidationError("--leave-running and --leave-stopped exclude each other") }
        if lazyPages { throw ValidationError(DumpLazyPages.refusal) }
        try stream.validate(imagesDir: imagesDir)
    }

    /// What `cryo dump` and a DUMP over RPC run (the CLI adds a remote or stream store).
    func request() throws -> DumpRequest {
        var req = DumpRequest(pid: tree, imagesDir: imagesDir ?? StreamPaths.anchor(nil))
        req.leave = leaveRunning ? .running : leaveStopped ? .stopped : .killed
        req.trackMem = trackMem
        req.prevImagesDir = prevImagesDir
        req.trackStore = trackStore
        req.pageServer = pageServer.target
        req.shellJob = shellJob
        req.splicePages = splicePages
        req.manageCgroups = try cgroups.mode
        req.external = network.external
        req.networkLock = network.networkLock
        runtime.apply(to: &req)
        return req
    }

    func run() throws {
        let imagesDir = self.imagesDir ?? StreamPaths.anchor(nil)
        try log.bootstrap(imagesDir: remote.logBase(log, imagesDir: imagesDir))
        var req = try request()
        let store = try remote.store(imagesDir, command: "dump")
        req.imageStore = store
        do {
            if let s = try stream.store(imagesDir: self.imagesDir) { req.imageStore = s }
            try Dumper(req).run()
        } catch {
            store?.fail(reason: "cryo dump -t \(tree) -D \(imagesDir) failed: \(error)")
            FileHandle.standardError.write(Data("cryo dump: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a process tree from an images directory.",
        discussion: "Without -d cryo waits for the restored tree and exits with its status.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "The images to restore from.") var imagesDir: String?
    @OptionGroup var stream: StreamRestoreOptions
    @Flag(name: [.customShort("d"), .customLong("restore-detached")], help: "Exit once the tree runs.") var detached = false
    @Option(name: .customLong("pidfile"), help: "Write the root pid here.") var pidfile: String?
    @Flag(name: [.customShort("j"), .customLong("shell-job")],
          help: "The tree was a job of a shell: it joins cryo's session, and its terminal fds open cryo's terminal.") var shellJob = false
    @Flag(name: .customLong("lazy-pages"), help: "Leave private anonymous memory to `cryo lazy-pages` (post-copy).") var lazyPages = false
    @OptionGroup var remote: RemoteRestoreOptions

    @OptionGroup var criuOnly: CriuRefusedOptions
    func validate() throws {
        try criuOnly.check()
        try stream.validate(imagesDir: imagesDir)
    }
    @OptionGroup var cgroups: CgroupOptions
    @OptionGroup var network: NetworkOptions
    @OptionGroup var runtime: RuntimeRestoreOptions

    /// What `cryo restore` and a RESTORE over RPC run (the CLI adds a remote or stream store).
    func request() throws -> RestoreRequest {
        var req = RestoreRequest(imagesDir: imagesDir ?? StreamPaths.anchor(nil))
        req.detach = detached
        req.pidfile = pidfile
        req.shellJob = shellJob
        req.lazyPages = lazyPages
        req.workDir = log.workDir
        req.manageCgroups = try cgroups.mode
        req.external = network.external
        req.networkLock = network.networkLock
        try runtime.apply(to: &req)
        return req
    }

    func run() throws {
        let imagesDir = self.imagesDir ?? StreamPaths.anchor(nil)
        try log.bootstrap(imagesDir: remote.logBase(log, imagesDir: imagesDir))
        var req = try request()
        req.imageStore = try remote.store(imagesDir)
        let result: (pid: Int32, exitStatus: Int32?)
        do {
            if let s = try stream.store(imagesDir: self.imagesDir) { req.imageStore = s }
            result = try Restorer(req).run()
        } catch {
            FileHandle.standardError.write(Data("cryo restore: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if let st = result.exitStatus {
            throw ExitCode((st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f))
        }
    }
}

struct PreDump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pre-dump",
        abstract: "Copy a process's memory while it keeps running, and arm dirty-page tracking.",
        discussion: "The process is frozen only to read its mappings and scan its tracking. Pass the same --track-store to every pre-dump and to the final `dump --track-mem --prev-images-dir`.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("t"), .customLong("tree")], help: "Pid of the process.") var tree: Int32
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "Where to write the images.") var imagesDir: String
    @Option(name: .customLong("prev-images-dir"), help: "The previous pre-dump (relative to -D).") var prevImagesDir: String?
    @OptionGroup var external: ExternalOptions
    @Option(name: .customLong("track-store"), help: "fd of a unix datagram socket (yours) that holds dirty tracking between runs.") var trackStore: Int32?
    @OptionGroup var pageServer: PageServerClientOptions
    @OptionGroup var remote: RemoteDumpOptions
    @OptionGroup var runtime: RuntimeDumpOptions
    /// Accepted as CRIU's pre-dump accepts it: a pre-dump writes no cgroups either way.
    @OptionGroup var cgroups: CgroupOptions
    @OptionGroup var criuOnly: CriuRefusedOptions

    func validate() throws {
        try criuOnly.check()
        _ = try cgroups.mode
    }

    /// What `cryo pre-dump` and a PRE_DUMP over RPC run (the CLI adds a remote store).
    func request() throws -> PreDumpRequest {
        var req = PreDumpRequest(pid: tree, imagesDir: imagesDir)
        req.pageServer = pageServer.target
        req.prevImagesDir = prevImagesDir
        req.trackStore = trackStore
        req.freezeCgroup = runtime.freezeCgroup
        req.emptyNamespaces = runtime.emptyNamespaces
        req.external = external.external
        return req
    }

    func run() throws {
        try log.bootstrap(imagesDir: remote.logBase(log, imagesDir: imagesDir))
        var req = try request()
        let store = try remote.store(imagesDir, command: "pre-dump")
        req.imageStore = store
        do {
            try PreDumper(req).run()
        } catch {
            store?.fail(reason: "cryo pre-dump -t \(tree) -D \(imagesDir) failed: \(error)")
            FileHandle.standardError.write(Data("cryo pre-dump: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Dedup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Free the pages of parent snapshots that newer snapshots overwrote.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "The newest snapshot of the chain.") var imagesDir: String

    func run() throws {
        try log.bootstrap(imagesDir: imagesDir)
        do {
            let st = try Deduplicator(imagesDir: imagesDir).run()
            print("dedup: \(st.punchedBytes) bytes freed in \(st.filesTouched) file(s)")
        } catch {
            FileHandle.standardError.write(Data("cryo dedup: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
