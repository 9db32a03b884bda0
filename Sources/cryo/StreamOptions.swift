import ArgumentParser
import Engine
import Foundation
import Logging

/// `cryo dump --stream-to FD|PATH [--compress]` (docs/STREAM.md).
struct StreamDumpOptions: ParsableArguments {
    @Option(name: .customLong("stream-to"), help: "Write the whole checkpoint as one framed stream to this fd (a number) or PATH instead of -D.")
    var streamTo: String?
    @Flag(name: .customLong("compress"), help: "Compress the stream's pages with zstd.") var compress = false

    func validate(imagesDir: String?) throws {
        if streamTo == nil && imagesDir == nil { throw ValidationError("give -D DIR or --stream-to FD|PATH") }
        if compress && streamTo == nil { throw ValidationError("--compress applies to --stream-to") }
    }

    /// The store the dump writes to, or nil for the images folder.
    func store(imagesDir: String?) throws -> ImageStore? {
        guard let streamTo else { return nil }
        return try StreamImageStore.open(streamTo, location: StreamPaths.anchor(imagesDir), compress: compress)
    }
}

/// `cryo restore --stream-from FD|PATH`.
struct StreamRestoreOptions: ParsableArguments {
    @Option(name: .customLong("stream-from"), help: "Restore from a checkpoint stream on this fd (a number) or PATH; the images stay in memory.")
    var streamFrom: String?

    func validate(imagesDir: String?) throws {
        if streamFrom == nil && imagesDir == nil { throw ValidationError("give -D DIR or --stream-from FD|PATH") }
    }

    /// Reads the whole stream before anything is restored: a bad stream creates no process.
    func store(imagesDir: String?) throws -> ImageStore? {
        guard let streamFrom else { return nil }
        let r = try StreamReader.open(streamFrom, location: StreamPaths.anchor(imagesDir)).read()
        Logger(label: "stream").info("stream read: \(r.images) images, \(r.imageBytes) bytes of images, \(r.streamBytes) bytes of stream")
        r.waitForPids(timeout: 10)
        return r.store
    }
}

enum StreamPaths {
    /// Where a stream's relative parent link resolves (and logs go): -D, else the cwd.
    static func anchor(_ imagesDir: String?) -> String {
        if let imagesDir { return imagesDir.hasPrefix("/") ? imagesDir : FileManager.default.currentDirectoryPath + "/" + imagesDir }
        return FileManager.default.currentDirectoryPath
    }
}
