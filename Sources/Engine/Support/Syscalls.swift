import CKernel
import Glibc

/// x86_64 syscall numbers for calls glibc 2.36 does not wrap (or wraps only under _GNU_SOURCE),
/// and the numbers cryo injects into tasks. The one table of them in cryo.
public enum SyscallNumber: Int {
    case read = 0, write = 1, open = 2, close = 3, lseek = 8, mmap = 9, mprotect = 10, munmap = 11, brk = 12
    case rtSigaction = 13, rtSigprocmask = 14, ioctl = 16, mremap = 25, madvise = 28, mlock = 149
    case dup2 = 33, pause = 34, nanosleep = 35, getitimer = 36, setitimer = 38, getpid = 39
    case sendmsg = 46, recvmsg = 47, clone = 56, fork = 57, exit = 60, wait4 = 61, kill = 62
    case fcntl = 72, chdir = 80, fchdir = 81, umask = 95, getrlimit = 97, getuid = 102, getgid = 104
    case rtSigtimedwait = 128, getpgid = 121, setuid = 105, setgid = 106, setpgid = 109, getppid = 110, setsid = 112, setgroups = 116
    case setresuid = 117, setresgid = 119, setfsuid = 122, setfsgid = 123, getsid = 124
    case capset = 126, rtSigpending = 127, sigaltstack = 131, personality = 135, prctl = 157
    case archPrctl = 158, chroot = 161, gettid = 186, futex = 202, setTidAddress = 218
    case timerCreate = 222, timerSettime = 223, timerGettime = 224, timerGetoverrun = 225, timerDelete = 226, exitGroup = 231
    case tgkill = 234, mbind = 237, setMempolicy = 238, getMempolicy = 239, setRobustList = 273, getRobustList = 274, prlimit64 = 302
    case processVmReadv = 310, processVmWritev = 311, kcmp = 312, seccomp = 317, memfdCreate = 319
    case userfaultfd = 323, rseq = 334, pidfdOpen = 434, clone3 = 435, closeRange = 436, pidfdGetfd = 438
    case rtSigqueueinfo = 129, rtTgsigqueueinfo = 297, fallocate = 285
    case epollCtl = 233, inotifyAddWatch = 254, inotifyRmWatch = 255, tee = 276, timerfdCreate = 283
    case timerfdSettime = 286, timerfdGettime = 287, signalfd4 = 289, eventfd2 = 290, epollCreate1 = 291
    case bind = 49, connect = 42, listen = 50, getxattr = 191, accept4 = 288
    case pipe2 = 293, inotifyInit1 = 294, fanotifyInit = 300, fanotifyMark = 301, nameToHandleAt = 303, openByHandleAt = 304, clockGettime = 228
    case getpriority = 140, setpriority = 141, schedSetscheduler = 144, schedGetscheduler = 145, schedGetparam = 143, schedSetaffinity = 203, schedGetaffinity = 204
    case ioprioSet = 251, ioprioGet = 252, membarrier = 324
    case flock = 73
    case splice = 275, vmsplice = 278
    case rtSigreturn = 15, restartSyscall = 219
    case mount = 165, umount2 = 166, pivotRoot = 155
    case openTree = 428, moveMount = 429, mountSetattr = 442
    case shmat = 30
    case unshare = 272
}

/// Thin wrappers for the raw syscalls cryo itself makes. Each returns the result or throws
/// a SystemCallError naming the call and context.
public enum Sys {
    /// splice(2) of `count` bytes out of `pipe` into `fd`: at `offset` of a file, or at its own
    /// position (a pipe, a socket). EINTR and short moves go round again. Returns the bytes
    /// moved and, when it stopped before `count`, why (errno; 0 when the pipe ran dry).
    public static func spliceAll(from pipe: Int32, to fd: Int32, at offset: Int? = nil, count: Int, flags: Int) -> (moved: Int, errno: Int32) {
        var moved = 0
        while moved < count {
            var off = Int64((offset ?? 0) + moved)
            let k = offset == nil
                ? ck_syscall6(SyscallNumber.splice.rawValue, Int(pipe), 0, Int(fd), 0, count - moved, flags)
                : withUnsafeMutablePointer(to: &off) { ck_syscall6(SyscallNumber.splice.rawValue, Int(pipe), 0, Int(fd), Int(bitPattern: $0), count - moved, flags) }
            if k < 0 && ck_errno() == EINTR { continue }
            if k <= 0 { return (moved, k < 0 ? ck_errno() : 0) }
            moved += k
        }
        return (moved, 0)
    }

    @discardableResult
    public static func call(_ nr: SyscallNumber, _ a1: Int = 0, _ a2: Int = 0, _ a3: Int = 0,
                            _ a4: Int = 0, _ a5: Int = 0, _ a6: Int = 0, context: @autoclosure () -> String = "") throws -> Int {
        let r = ck_syscall6(nr.rawValue, a1, a2, a3, a4, a5, a6)
        if r < 0 { throw SystemCallError(call: "\(nr)", errno: ck_errno(), context: context()) }
        return r
    }

    public static func pidfdOpen(_ pid: Int32) throws -> Int32 {
        Int32(try call(.pidfdOpen, Int(pid), 0, context: "pid \(pid)"))
    }

    public static func pidfdGetfd(pidfd: Int32, fd: Int32, context: String = "") throws -> Int32 {
        Int32(try call(.pidfdGetfd, Int(pidfd), Int(fd), 0, context: context))
    }

    /// Reads `len` bytes at `remote` in `pid` into `local`. Returns bytes read (may be short
    /// at an unmapped page, as the kernel reports).
    public static func processVmRead(pid: Int32, local: UnsafeMutableRawPointer, remote: UInt64, len: Int) throws -> Int {
        var l = iovec(iov_base: local, iov_len: len)
        var r = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(remote)), iov_len: len)
        return try withUnsafePointer(to: &l) { lp in
            try withUnsafePointer(to: &r) { rp in
                try call(.processVmReadv, Int(pid), Int(bitPattern: lp), 1, Int(bitPattern: rp), 1, 0,
                         context: "pid \(pid) addr 0x\(String(remote, radix: 16)) len \(len)")
            }
        }
    }

    public static func processVmWrite(pid: Int32, local: UnsafeRawPointer, remote: UInt64, len: Int) throws -> Int {
        var l = iovec(iov_base: UnsafeMutableRawPointer(mutating: local), iov_len: len)
        var r = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(remote)), iov_len: len)
        return try withUnsafePointer(to: &l) { lp in
            try withUnsafePointer(to: &r) { rp in
                try call(.processVmWritev, Int(pid), Int(bitPattern: lp), 1, Int(bitPattern: rp), 1, 0,
                         context: "pid \(pid) addr 0x\(String(remote, radix: 16)) len \(len)")
            }
        }
    }

    /// kcmp(2): 0 equal, 1/2 ordered (different).
    public static func kcmp(_ pid1: Int32, _ pid2: Int32, type: Int32, _ idx1: Int, _ idx2: Int) throws -> Int {
        try call(.kcmp, Int(pid1), Int(pid2), Int(type), idx1, idx2, context: "kcmp \(pid1) \(pid2)")
    }
}

/// clone(2) flags (Glibc does not export them to Swift).
public enum CloneFlag {
    public static let vm: UInt64 = 0x100, fs: UInt64 = 0x200, files: UInt64 = 0x400, sighand: UInt64 = 0x800
    public static let thread: UInt64 = 0x10000, sysvsem: UInt64 = 0x40000
    public static let parent: UInt64 = 0x8000, newnet: UInt64 = 0x4000_0000
}
