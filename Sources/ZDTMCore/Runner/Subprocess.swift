import Foundation
import Glibc
import CKernel

public enum SubprocessError: Error, CustomStringConvertible {
    case spawn(path: String, errno: Int32)
    case timeout(pid: Int32, seconds: Double)

    public var description: String {
        switch self {
        case .spawn(let p, let e): return "cannot start \(p): \(String(cString: strerror(e)))"
        case .timeout(let pid, let s): return "pid \(pid) did not exit within \(s) s"
        }
    }
}

/// Starting and reaping processes by pid. zdtm never waits for "any child", so reaping stays
/// exact even with cases running in parallel.
public enum Subprocess {
    /// Starts `path args` in `cwd`, stdout/stderr to `output` (appended) or inherited.
    public static func spawn(_ path: String, _ args: [String], cwd: String? = nil, output: String? = nil) throws -> Int32 {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        if let cwd { ck_spawn_addchdir(&fa, cwd) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        if let output {
            posix_spawn_file_actions_addopen(&fa, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&fa, 1, 2)
        }
        ck_spawn_addclosefrom(&fa, 3)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, path, &fa, nil, argv, environ)
        if r != 0 { throw SubprocessError.spawn(path: path, errno: r) }
        return pid
    }

    /// Waits for `pid` to exit; nil on timeout (the process is left alone).
    public static func wait(_ pid: Int32, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var st: Int32 = 0
        while true {
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid { return st }
            if r < 0 && errno != EINTR { return nil }
            if Date() > deadline { return nil }
            usleep(5_000)
        }
    }

    /// Runs to completion, capturing combined output in `log`. Returns the wait status.
    public static func run(_ path: String, _ args: [String], log: String, timeout: Double) throws -> Int32 {
        let pid = try spawn(path, args, output: log)
        guard let st = wait(pid, timeout: timeout) else {
            kill(pid, SIGKILL)
            _ = wait(pid, timeout: 5)
            throw SubprocessError.timeout(pid: pid, seconds: timeout)
        }
        return st
    }

    public static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
