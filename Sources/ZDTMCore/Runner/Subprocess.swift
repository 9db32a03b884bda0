import CKernel
import Foundation
import Glibc

public enum SubprocessError: Error, CustomStringConvertible, Equatable {
    case spawn(path: String, errno: Int32)
    case timeout(pid: Int32, seconds: Double)
    case notChild(pid: Int32, errno: Int32)

    public var description: String {
        switch self {
        case .spawn(let p, let e): return "cannot start \(p): \(String(cString: strerror(e)))"
        case .timeout(let pid, let s): return "pid \(pid) did not exit within \(s) s"
        case .notChild(let pid, let e): return "cannot wait for pid \(pid): \(String(cString: strerror(e))) (is zdtm its subreaper?)"
        }
    }
}

/// Starting and reaping processes by pid. zdtm never waits for "any child", so reaping stays
/// exact even with cases running in parallel.
public enum Subprocess {
    /// Starts `path args` in `cwd`, stdin from /dev/null, stdout/stderr to `output` (appended)
    /// or inherited. `passFd` is handed to the child as its fd 3 (cryo's --track-store), and
    /// `moreFds` as fds 4, 5... (they need passFd).
    public static func spawn(_ path: String, _ args: [String], cwd: String? = nil, output: String? = nil, passFd: Int32? = nil, moreFds: [Int32] = []) throws -> Int32 {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        if let cwd { ck_spawn_addchdir(&fa, cwd) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        if let output {
            posix_spawn_file_actions_addopen(&fa, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&fa, 1, 2)
        }
        // zdtm's own fds (logs, other cases' files) must not leak into the workload's fd table.
        var high: [Int32] = []
        defer { high.forEach { if $0 >= 0 { close($0) } } }
        if let passFd {
            // dup2 onto itself would keep close-on-exec set on older glibc: go through fd 3 always.
            // Copies above any target number first, so no dup2 overwrites a source still to come.
            high = ([passFd] + moreFds).map { fcntl($0, F_DUPFD_CLOEXEC, 100) }
            for (i, fd) in high.enumerated() { posix_spawn_file_actions_adddup2(&fa, fd, Subprocess.passedFd + Int32(i)) }
            ck_spawn_addclosefrom(&fa, Subprocess.passedFd + Int32(high.count))
        } else {
            ck_spawn_addclosefrom(&fa, 3)
        }
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, path, &fa, nil, argv, environ)
        if r != 0 { throw SubprocessError.spawn(path: path, errno: r) }
        return pid
    }

    /// Waits for `pid` to exit and returns its wait status; nil on timeout (the process is
    /// left alone). Throws if `pid` is not ours to wait for.
    public static func wait(_ pid: Int32, timeout: Double) throws -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var st: Int32 = 0
        while true {
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid { return st }
            if r < 0 && errno != EINTR { throw SubprocessError.notChild(pid: pid, errno: errno) }
            if Date() > deadline { return nil }
            usleep(2_000)
        }
    }

    /// SIGKILL and reap; for clean-up paths where the outcome is already decided.
    public static func kill9(_ pid: Int32) {
        Glibc.kill(pid, SIGKILL)
        _ = try? wait(pid, timeout: 5)
    }

    /// The fd number a passed fd has in the child.
    public static let passedFd: Int32 = 3

    /// Runs to completion, capturing combined output in `log`. Returns the wait status.
    public static func run(_ path: String, _ args: [String], cwd: String? = nil, log: String, timeout: Double, passFd: Int32? = nil, moreFds: [Int32] = []) throws -> Int32 {
        let pid = try spawn(path, args, cwd: cwd, output: log, passFd: passFd, moreFds: moreFds)
        guard let st = try wait(pid, timeout: timeout) else {
            kill9(pid)
            throw SubprocessError.timeout(pid: pid, seconds: timeout)
        }
        return st
    }

    public static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// "exit 1" or "killed by signal 9", for messages.
    public static func describe(_ status: Int32) -> String {
        (status & 0x7f) == 0 ? "exit \((status >> 8) & 0xff)" : "killed by signal \(status & 0x7f)"
    }
}
