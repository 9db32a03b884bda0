import Glibc

/// What dump knows about one open fd before a kind claims it.
public struct OpenFd {
    public let pid: Int32
    public let fd: Int32
    public let target: String
    public let info: ProcFdInfo
    public let stat: stat
}

/// One kind of file descriptor: how to recognise, dump and restore it. Adding a kind is adding
/// a type here and listing it in `FdKinds.all`.
protocol FdKind {
    static var name: String { get }
    static var type: Img_FdTypes { get }
    static func claims(_ f: OpenFd) -> Bool
    /// Fills the kind-specific part of a files.img entry; state that lives outside files.img
    /// (data in flight, queued packets, memfd contents) goes to `ctx`.
    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws
    /// Makes the file exist in the task being restored; returns the fd number it got there.
    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32
    /// Files that need others in place first are restored later, stage by stage: 0 first,
    /// then 1 and 2 (unix connections, which need their listener: accepted ones before those
    /// still waiting), then 3 (epoll, which registers fds by number); 4 (pidfds) once every
    /// task exists.
    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int
}

extension FdKind {
    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int { 0 }
}

enum FdKinds {
    static let all: [any FdKind.Type] = [
        RegularFile.self, PipeFile.self, FifoFile.self, EventFd.self, SignalFd.self, TimerFd.self,
        EventPoll.self, Inotify.self, Fanotify.self, MemFd.self, UnixSocket.self, InetSocket.self, TcpSocket.self,
        PidFd.self, Tty.self, NsFile.self,
        RawSocket.self, PacketSocket.self, NetlinkSocket.self,
    ]

    static func kind(for type: Img_FdTypes) -> (any FdKind.Type)? { all.first { $0.type == type } }

    /// A name for an fd nobody claims, for the error message.
    static func describe(_ f: OpenFd) -> String {
        if f.target.hasPrefix("pipe:") { return "pipe" }
        if f.target.hasPrefix("socket:") {
            // sockfs names the protocol: "TCP", "UDPv6", "NETLINK", "PACKET"...
            return SockDiag.protocolName(pid: f.pid, fd: f.fd).map { "\($0) socket" } ?? "socket"
        }
        if f.target.hasPrefix("anon_inode:") { return String(f.target.dropFirst(11)) }
        switch f.stat.st_mode & S_IFMT {
        case S_IFIFO: return "FIFO"
        case S_IFSOCK: return "socket"
        case S_IFBLK: return "block device"
        default: return "file"
        }
    }

    /// The fown part every file entry carries; cryo restores no F_SETOWN owner yet.
    static var noOwner: Img_FownEntry {
        var o = Img_FownEntry()
        o.uid = 0; o.euid = 0; o.signum = 0; o.pidType = 0; o.pid = 0
        return o
    }
}

/// File status flags as F_SETFL takes them: the access mode and creation flags are fixed at
/// open time, the rest (O_NONBLOCK, O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME) can be set later.
enum FileFlags {
    // Glibc's Swift overlay lacks the _GNU_SOURCE ones; x86_64 values.
    static let direct: Int32 = 0o40000, noatime: Int32 = 0o1000000, path: Int32 = 0o10000000
    static let settable: Int32 = O_APPEND | O_NONBLOCK | O_ASYNC | direct | noatime

    static func set(_ fd: Int32, _ flags: UInt32, what: String) throws {
        let want = Int32(bitPattern: flags) & settable
        let cur = fcntl(fd, F_GETFL)
        guard cur >= 0 else { throw SystemCallError(call: "fcntl(F_GETFL)", errno: errno, context: what) }
        if cur & settable != want {
            guard fcntl(fd, F_SETFL, (cur & ~settable) | want) == 0 else {
                throw SystemCallError(call: "fcntl(F_SETFL)", errno: errno, context: what)
            }
        }
    }
}
