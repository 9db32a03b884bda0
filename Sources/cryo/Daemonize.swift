import ArgumentParser
import Foundation
import Glibc

/// `-d` and `--pidfile` of the daemons: fork once listening, the parent writes the pidfile and
/// exits, the child leaves the session with stdio on /dev/null (stderr too when logging to -o).
enum Daemonize {
    static func run(_ daemon: Bool, pidfile: String?, logsToFile: Bool, name: String) throws {
        if daemon {
            let child = fork()
            if child < 0 { FileHandle.standardError.write(Data("cryo \(name): fork: \(String(cString: strerror(errno)))\n".utf8)); throw ExitCode(1) }
            if child > 0 {
                if let pidfile { try "\(child)\n".write(toFile: pidfile, atomically: true, encoding: .utf8) }
                Glibc.exit(0)
            }
            setsid()
            let null = open("/dev/null", O_RDWR)
            if null >= 0 { dup2(null, 0); dup2(null, 1); if logsToFile { dup2(null, 2) }; close(null) }
        } else if let pidfile {
            try "\(getpid())\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
        }
    }

    /// "512M", "2G", "1048576".
    static func bytes(_ s: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var t = s.uppercased()
        if t.hasSuffix("B") { t.removeLast() }
        var mult = 1
        if let u = t.last, let m = units[u] { mult = m; t.removeLast() }
        guard let n = Int(t), n > 0 else { return nil }
        let (r, o) = n.multipliedReportingOverflow(by: mult)
        return o ? nil : r
    }
}
