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
    /// Fills the kind-specific part of a files.img entry.
    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry) throws
    /// Opens the file inside the task being restored; returns the fd number it got there.
    static func restore(_ entry: Img_FileEntry, in task: RestoreTarget) throws -> Int32
}

enum FdKinds {
    static let all: [any FdKind.Type] = [RegularFile.self]

    static func kind(for type: Img_FdTypes) -> (any FdKind.Type)? { all.first { $0.type == type } }

    /// A name for an fd nobody claims, for the error message.
    static func describe(_ f: OpenFd) -> String {
        if f.target.hasPrefix("pipe:") { return "pipe" }
        if f.target.hasPrefix("socket:") { return "socket" }
        if f.target.hasPrefix("anon_inode:") { return String(f.target.dropFirst(11)) }
        switch f.stat.st_mode & S_IFMT {
        case S_IFIFO: return "FIFO"
        case S_IFSOCK: return "socket"
        case S_IFBLK: return "block device"
        default: return "file"
        }
    }
}
