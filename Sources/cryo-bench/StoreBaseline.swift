// A second limit for the page-server scenario: the raw stream of rawLoopbackStream, but the
// reader stores what it gets into a file in the benchmark's folder the way `cryo page-server`
// does (socket -> pipe -> file with splice, a 1 MiB pipe). A page server has to keep every
// byte; the plain stream throws them away, so it measures the network path alone.
import CKernel
import Engine
import Foundation
import Glibc

func rawLoopbackStreamStored(bytes: Int, dir: String) throws -> Double {
    let (lfd, port) = try TCP.listen(address: "127.0.0.1", port: 0)
    defer { close(lfd) }
    let done = DispatchSemaphore(value: 0)
    let file = dir + "/raw-stream.bin"
    let reader = Thread {
        let c = accept(lfd, nil, nil)
        let out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        var p: [Int32] = [-1, -1]
        _ = pipe(&p)
        _ = ck_fcntl_int(p[1], 1031 /* F_SETPIPE_SZ */, 1 << 20)
        var got = 0
        var off: Int64 = 0
        while got < bytes {
            let n = ck_syscall6(275 /* splice */, Int(c), 0, Int(p[1]), 0, min(1 << 20, bytes - got), 1)
            if n <= 0 { break }
            var left = n
            while left > 0 {
                let w = withUnsafeMutablePointer(to: &off) { ck_syscall6(275, Int(p[0]), 0, Int(out), Int(bitPattern: $0), left, 1) }
                if w <= 0 { break }
                left -= w
            }
            got += n
        }
        close(p[0]); close(p[1]); close(out); close(c)
        done.signal()
    }
    reader.start()
    defer { unlink(file) }
    return try streamTo(port: port, bytes: bytes, until: done)
}
