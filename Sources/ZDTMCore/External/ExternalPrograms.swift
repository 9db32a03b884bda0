import Foundation
import Glibc

/// Programs that speak the zdtm protocol from outside the catalogue (CRIU's zdtm/static
/// binaries): each gets the arguments its folder's Makefile gives it and its NAME.desc.
public enum ExternalPrograms {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// The workload for the binary at `path`, with `makefile` (its folder's, when it has one).
    public static func workload(path: String, makefile: CriuMakefile?) throws -> Workload {
        let abs = ((path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path) as NSString).standardizingPath
        let name = (abs as NSString).lastPathComponent
        var w = Workload(name: name)
        w.externalPath = abs
        w.description = "external binary"
        w.args = makefile?.args(for: name) ?? []
        let descPath = abs + ".desc"
        if let text = try? String(contentsOfFile: descPath, encoding: .utf8) {
            do { w.desc = try ZdtmDesc.parse(text, path: descPath) } catch { throw Problem(description: "\(error)") }
            w.opts = w.desc?.opts.filter { ZdtmDesc.passedOpts.contains($0) || ZdtmDesc.defaultOpts.contains($0) } ?? []
        }
        return w
    }

    /// The Makefile beside `path`, if there is one.
    public static func makefile(in dir: String) -> CriuMakefile? {
        (try? String(contentsOfFile: dir + "/Makefile", encoding: .utf8)).map(CriuMakefile.parse)
    }

    /// Every ELF executable directly in `dir`, by name.
    public static func scan(_ dir: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        return names.filter { n in
            let p = dir + "/" + n
            var st = stat()
            guard stat(p, &st) == 0, st.st_mode & S_IFMT == S_IFREG, access(p, X_OK) == 0 else { return false }
            guard let h = FileHandle(forReadingAtPath: p) else { return false }
            defer { try? h.close() }
            return (try? h.read(upToCount: 4)) == Data([0x7f, 0x45, 0x4c, 0x46])
        }.map { dir + "/" + $0 }
    }

    static var machine: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
