import ArgumentParser
import Engine
import Foundation

struct LazyPages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lazy-pages",
        abstract: "Serve the memory of a tree restored with `restore --lazy-pages` (post-copy).",
        discussion: """
            Start it before `cryo restore --lazy-pages`: it listens on lazy-pages.socket in the work directory, \
            takes the restored tasks' userfaultfds, serves their faults and fills the rest in the background, \
            and exits when every page is in. Pages come from the images (-D) or, with --page-server, from \
            `cryo page-server --lazy-pages` on the dump side. If the page server goes away while pages are \
            missing, the restored tree is killed.
            """)

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "The images (pages are read from here unless --page-server).") var imagesDir: String
    @Flag(name: .customLong("page-server"), help: "Fetch pages from a page server instead of the images.") var pageServer = false
    @Option(name: .customLong("address"), help: "The page server's address.") var address = "127.0.0.1"
    @Option(name: .customLong("port"), help: "The page server's port.") var port: UInt16?
    @Option(name: .customLong("stats-file"), help: "Write counts and fault latencies here as JSON.") var statsFile: String?
    @OptionGroup var remote: RemoteRestoreOptions

    func validate() throws {
        if pageServer && port == nil { throw ValidationError("--page-server needs --port") }
        if pageServer && remote.remote { throw ValidationError("--page-server and --remote are two sources: give one") }
        if remote.remote && log.workDir == nil { throw ValidationError("--remote needs -W (where lazy-pages.socket goes: -D names a snapshot, not a folder)") }
    }

    func run() throws {
        try log.bootstrap()
        do {
            let source: any LazyPageSource
            if pageServer {
                source = try RemotePageServerSource(address: address, port: port!)
            } else if remote.remote, let cachePath = remote.cachePath {
                // Every pages image opened now (memfds): the cache may stop once the restore ran.
                let store = try RemoteSnapshotStore(snapshot: try RemoteSnapshotID.of(imagesDir), source: try RemoteSnapshotReader(socketPath: cachePath))
                let local = LocalImagesPageSource(images: ImageDirectory(store: store))
                try local.openAll()
                source = local
            } else {
                source = try LocalImagesPageSource(imagesDir: imagesDir)
            }
            defer { source.close() }
            let daemon = LazyPagesDaemon(source: source, socketPath: LazyPolicy.socketPath(workDir: log.workDir ?? imagesDir))
            let st = try daemon.run()
            let lat = st.faultLatencyNs.sorted()
            func pct(_ p: Double) -> Double { lat.isEmpty ? 0 : Double(lat[min(lat.count - 1, Int(Double(lat.count) * p))]) / 1000 }
            print("lazy-pages: \(st.tasks) task(s), all in after \(String(format: "%.3f", st.allInSeconds)) s; \(st.faults) faults (\(st.faultPages) pages, p50 \(String(format: "%.1f", pct(0.5))) us, p99 \(String(format: "%.1f", pct(0.99))) us), \(st.backgroundPages) pages in the background, \(st.zeroPages) zero, \(st.dropped) dropped, \(st.alreadyThere) already written, \(st.forks) fork(s)")
            if let statsFile {
                let obj: [String: Any] = ["tasks": st.tasks, "faults": st.faults, "fault_pages": st.faultPages, "background_pages": st.backgroundPages,
                                          "zero_pages": st.zeroPages, "dropped": st.dropped, "already_there": st.alreadyThere, "forks": st.forks, "retried": st.retried,
                                          "all_in_seconds": st.allInSeconds, "fault_latency_us_p50": pct(0.5), "fault_latency_us_p99": pct(0.99)]
                try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]).write(to: URL(fileURLWithPath: statsFile))
            }
        } catch {
            FileHandle.standardError.write(Data("cryo lazy-pages: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
