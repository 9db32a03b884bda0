import Engine
import Foundation

/// CRIU's habit for -o: a relative log file lives in --work-dir, which defaults to the images
/// folder; an absolute one is taken as it is, and "-" is stderr.
enum LogPath {
    static func resolve(_ file: String?, workDir: String?, imagesDir: String?) throws -> String? {
        guard let file, file != "-" else { return nil }
        if file.hasPrefix("/") { return file }
        guard let base = workDir ?? imagesDir else { return file }
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        return (base as NSString).appendingPathComponent(file)
    }
}

extension LogOptions {
    /// For commands with an images folder: -o FILE relative to --work-dir or to it.
    func bootstrap(imagesDir: String) throws {
        try CryoLog.bootstrap(verbosity: verbosity, file: try LogPath.resolve(logFile, workDir: workDir, imagesDir: imagesDir))
    }
}
