import CKernel
import Glibc

/// Runs a tool with `input` on its stdin and its stdout (and stderr, with `mergeStderr`)
/// captured through temporary files; `around` wraps the posix_spawn call (e.g. to spawn from
/// inside a namespace the calling thread enters). Returns the wait status and the output.
enum Spawn {
    static func run(_ path: String, _ args: [String], input: [UInt8] = [], mergeStderr: Bool = true,
                    around: (() -> Int32) throws -> Int32 = { $0() }) throws -> (status: Int32, output: [UInt8]) {
        var inName = Array("/tmp/cryo-spawn-in-XXXXXX".utf8CString), outName = Array("/tmp/cryo-spawn-out-XXXXXX".utf8CString)
        let inFd = mkstemp(&inName), outFd = mkstemp(&outName)
        defer {
            if inFd >= 0 { close(inFd); unlink(String(cString: inName)) }
            if outFd >= 0 { close(outFd); unlink(String(cString: outName)) }
        }
        guard inFd >= 0, outFd >= 0 else { throw SystemCallError(call: "mkstemp", errno: errno, context: path) }
        var off = 0
        while off < input.count {
            let n = input.withUnsafeBytes { write(inFd, $0.baseAddress! + off, $0.count - off) }
            guard n > 0 else { throw SystemCallError(call: "write", errno: errno, context: path) }
            off += n
        }
        lseek(inFd, 0, SEEK_SET)
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_adddup2(&fa, inFd, 0)
        posix_spawn_file_actions_adddup2(&fa, outFd, 1)
        if mergeStderr { posix_spawn_file_actions_adddup2(&fa, outFd, 2) }
        ck_spawn_addclosefrom(&fa, 3)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let r = try around { posix_spawn(&pid, path, &fa, nil, argv, environ) }
        guard r == 0 else { throw SystemCallError(call: "posix_spawn(\(path))", errno: r) }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        lseek(outFd, 0, SEEK_SET)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(outFd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return (st, out)
    }
}
