import ArgumentParser
import Engine
import Foundation

/// `--remote --local-proxy-path SOCK` of dump and pre-dump: every image goes to `cryo image-proxy`,
/// as snapshot -D (its last path component); logs stay local.
struct RemoteDumpOptions: ParsableArguments {
    @Flag(name: .customLong("remote"), help: "Send every image to `cryo image-proxy` instead of writing -D; -D names the snapshot.") var remote = false
    @Option(name: .customLong("local-proxy-path"), help: "The image proxy's unix socket (with --remote).") var proxyPath: String?

    func validate() throws {
        if remote && proxyPath == nil { throw ValidationError("--remote needs --local-proxy-path") }
        if !remote && proxyPath != nil { throw ValidationError("--local-proxy-path goes with --remote") }
    }

    /// Where a relative -o goes: --work-dir, or the current directory (-D is no folder here).
    func logBase(_ log: LogOptions, imagesDir: String) -> String {
        remote ? (log.workDir ?? FileManager.default.currentDirectoryPath) : imagesDir
    }

    /// The store for snapshot `imagesDir`, connected to the proxy; nil without --remote.
    func store(_ imagesDir: String, command: String) throws -> RemoteDumpStore? {
        guard remote, let proxyPath else { return nil }
        do { return try RemoteDumpStore(socketPath: proxyPath, snapshot: try RemoteSnapshotID.of(imagesDir)) } catch {
            FileHandle.standardError.write(Data("cryo \(command): image proxy: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `--remote --local-cache-path SOCK` of restore: every image comes from `cryo image-cache`.
struct RemoteRestoreOptions: ParsableArguments {
    @Flag(name: .customLong("remote"), help: "Read every image from `cryo image-cache`; -D names the snapshot.") var remote = false
    @Option(name: .customLong("local-cache-path"), help: "The image cache's unix socket (with --remote).") var cachePath: String?

    func validate() throws {
        if remote && cachePath == nil { throw ValidationError("--remote needs --local-cache-path") }
        if !remote && cachePath != nil { throw ValidationError("--local-cache-path goes with --remote") }
    }

    func logBase(_ log: LogOptions, imagesDir: String) -> String {
        remote ? (log.workDir ?? FileManager.default.currentDirectoryPath) : imagesDir
    }

    /// Waits until the snapshot is complete in the cache; an error names a failed dump.
    func store(_ imagesDir: String) throws -> ImageStore? {
        guard remote, let cachePath else { return nil }
        do {
            return try RemoteSnapshotStore(snapshot: try RemoteSnapshotID.of(imagesDir), source: try RemoteSnapshotReader(socketPath: cachePath))
        } catch {
            FileHandle.standardError.write(Data("cryo restore: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
