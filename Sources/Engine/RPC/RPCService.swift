import Foundation
import Glibc

/// `cryo service`: the unix-socket form of CRIU's RPC. Every connection is served by a forked
/// child, so one caller's dump never shares state with another's.
public enum RPCService {
    public static func listen(path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket", errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw SystemCallError(call: "bind", errno: ENAMETOOLONG, context: path)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        unlink(path)
        let old = umask(0o077)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        umask(old)
        guard r == 0, Glibc.listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw SystemCallError(call: "bind/listen", errno: e, context: path)
        }
        return fd
    }

    /// Accepts forever; `session` runs in a child per connection and returns its exit status.
    public static func serve(listener: Int32, path: String, session: (Int32) -> Int32) -> Never {
        signal(SIGCHLD, SIG_IGN)  // children are reaped by the kernel
        while true {
            let conn = accept(listener, nil, nil)
            if conn < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                exit(1)
            }
            let child = fork()
            if child == 0 {
                close(listener)
                signal(SIGCHLD, SIG_DFL)
                exit(session(conn))
            }
            close(conn)
        }
    }
}
