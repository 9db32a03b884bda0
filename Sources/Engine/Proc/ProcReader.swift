import Glibc

public enum ProcError: Error, CustomStringConvertible, Equatable {
    case io(path: String, errno: Int32)
    case malformed(path: String, line: Int, reason: String)
    case gone(pid: Int32)

    public var description: String {
        switch self {
        case .io(let p, let e): return "\(p): \(String(cString: strerror(e)))"
        case .malformed(let p, let l, let r): return "\(p):\(l): \(r)"
        case .gone(let pid): return "process \(pid) is gone"
        }
    }
}

/// Reads /proc files whole (they report size 0, so read until EOF) and hands them to the
/// parsers. The only reader of /proc in cryo.
public struct ProcReader: Sendable {
    public let root: String
    public init(root: String = "/proc") { self.root = root }

    func path(_ pid: Int32, _ rest: String) -> String { "\(root)/\(pid)/\(rest)" }

    public func readBytes(_ path: String, pid: Int32? = nil) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            if let pid, e == ENOENT || e == ESRCH { throw ProcError.gone(pid: pid) }
            throw ProcError.io(path: path, errno: e)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                if let pid, e == ESRCH { throw ProcError.gone(pid: pid) }
                throw ProcError.io(path: path, errno: e)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    public func readText(_ path: String, pid: Int32? = nil) throws -> String {
        String(decoding: try readBytes(path, pid: pid), as: UTF8.self)
    }

    public func readLink(_ path: String, pid: Int32? = nil) throws -> String {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        if n < 0 {
            let e = errno
            if let pid, e == ENOENT || e == ESRCH { throw ProcError.gone(pid: pid) }
            throw ProcError.io(path: path, errno: e)
        }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func listNumbers(_ dir: String, pid: Int32) throws -> [Int32] {
        guard let d = opendir(dir) else {
            let e = errno
            if e == ENOENT || e == ESRCH { throw ProcError.gone(pid: pid) }
            throw ProcError.io(path: dir, errno: e)
        }
        defer { closedir(d) }
        var out: [Int32] = []
        while let ent = readdir(d) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if let n = Int32(name) { out.append(n) }
        }
        return out.sorted()
    }

    public func maps(pid: Int32) throws -> [ProcMapping] {
        let p = path(pid, "maps")
        return try ProcMapsParser.parse(try readBytes(p, pid: pid), source: p)
    }

    public func smaps(pid: Int32) throws -> [ProcSmapsEntry] {
        let p = path(pid, "smaps")
        return try ProcSmapsParser.parse(try readText(p, pid: pid), source: p)
    }

    public func status(pid: Int32) throws -> ProcStatus {
        let p = path(pid, "status")
        return try ProcStatusParser.parse(try readText(p, pid: pid), source: p)
    }

    public func taskStatus(pid: Int32, tid: Int32) throws -> ProcStatus {
        let p = path(pid, "task/\(tid)/status")
        return try ProcStatusParser.parse(try readText(p, pid: pid), source: p)
    }

    public func stat(pid: Int32) throws -> ProcStat {
        let p = path(pid, "stat")
        return try ProcStatParser.parse(try readText(p, pid: pid), source: p)
    }

    public func taskStat(pid: Int32, tid: Int32) throws -> ProcStat {
        let p = path(pid, "task/\(tid)/stat")
        return try ProcStatParser.parse(try readText(p, pid: pid), source: p)
    }

    public func tasks(pid: Int32) throws -> [Int32] { try listNumbers(path(pid, "task"), pid: pid) }

    public func children(pid: Int32, tid: Int32) throws -> [Int32] {
        let text = try readText(path(pid, "task/\(tid)/children"), pid: pid)
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    public func allChildren(pid: Int32) throws -> [Int32] {
        var all: Set<Int32> = []
        for t in try tasks(pid: pid) {
            for c in (try? children(pid: pid, tid: t)) ?? [] { all.insert(c) }
        }
        return all.sorted()
    }

    public func fds(pid: Int32) throws -> [Int32] { try listNumbers(path(pid, "fd"), pid: pid) }

    public func fdTarget(pid: Int32, fd: Int32) throws -> String { try readLink(path(pid, "fd/\(fd)"), pid: pid) }

    public func fdinfo(pid: Int32, fd: Int32) throws -> ProcFdInfo {
        let p = path(pid, "fdinfo/\(fd)")
        return try ProcFdInfoParser.parse(try readText(p, pid: pid), source: p)
    }

    public func mountinfo(pid: Int32) throws -> [ProcMount] {
        let p = path(pid, "mountinfo")
        return try ProcMountInfoParser.parse(try readText(p, pid: pid), source: p)
    }

    public func cwd(pid: Int32) throws -> String { try readLink(path(pid, "cwd"), pid: pid) }
    public func root(pid: Int32) throws -> String { try readLink(path(pid, "root"), pid: pid) }
    public func exe(pid: Int32) throws -> String { try readLink(path(pid, "exe"), pid: pid) }

    public func cmdline(pid: Int32) throws -> [String] { try nulSeparated(path(pid, "cmdline"), pid: pid) }
    public func environ(pid: Int32) throws -> [String] { try nulSeparated(path(pid, "environ"), pid: pid) }
    public func auxv(pid: Int32) throws -> [UInt64] {
        let b = try readBytes(path(pid, "auxv"), pid: pid)
        return stride(from: 0, to: b.count - 7, by: 8).map { i in
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
            return v
        }
    }

    func nulSeparated(_ p: String, pid: Int32) throws -> [String] {
        let b = try readBytes(p, pid: pid)
        var out = b.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if out.last == "" { out.removeLast() }
        return out
    }
}
