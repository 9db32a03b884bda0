/// Compares two records of the same tree. Pure, so it is unit-tested without processes.
public enum StateDiff {
    /// One human-readable line per difference, e.g. "pid 42: map 7f00-7f10 rw-p changed to r--p".
    /// The root's ppid is not compared: it is whoever reaps the root (zdtm), which a restore
    /// may legitimately change.
    public static func compare(_ a: VisibleState, _ b: VisibleState, ignore: Set<StatePart> = []) -> [String] {
        var d: [String] = []
        let pa = Set(a.pids), pb = Set(b.pids)
        if !ignore.contains(.tree) {
            for p in pa.subtracting(pb).sorted() {
                d.append("tree: process \(p) (\(a.processes.first { $0.pid == p }?.comm ?? "?")) is gone")
            }
            for p in pb.subtracting(pa).sorted() {
                d.append("tree: process \(p) (\(b.processes.first { $0.pid == p }?.comm ?? "?")) appeared")
            }
        }
        for x in a.processes {
            guard let y = b.processes.first(where: { $0.pid == x.pid }) else { continue }
            let w = "pid \(x.pid)"
            if !ignore.contains(.tree) {
                if x.ppid != y.ppid && x.pid != a.root { d.append("\(w): ppid \(x.ppid) -> \(y.ppid)") }
                if x.pgid != y.pgid { d.append("\(w): pgid \(x.pgid) -> \(y.pgid)") }
                if x.sid != y.sid { d.append("\(w): sid \(x.sid) -> \(y.sid)") }
                if x.comm != y.comm { d.append("\(w): comm \(x.comm) -> \(y.comm)") }
                if x.isZombie != y.isZombie { d.append("\(w): " + (y.isZombie ? "exited (a zombie now)" : "was a zombie, is alive now")) }
            }
            // A process that died between the records kept only its place in the tree: its
            // empty cwd and fd table are not changes of a live process's state.
            if x.isZombie || y.isZombie { continue }
            if !ignore.contains(.cwd) && x.cwd != y.cwd { d.append("\(w): cwd \(x.cwd) -> \(y.cwd)") }
            let ta = x.threads.map(\.tid), tb = y.threads.map(\.tid)
            if !ignore.contains(.threads) && ta != tb {
                d.append("\(w): threads \(ta.count) -> \(tb.count) (tids \(list(ta)) -> \(list(tb)))")
            }
            if !ignore.contains(.sigmask) {
                if x.sigIgn != y.sigIgn { d.append("\(w): ignored signals \(hex(x.sigIgn)) -> \(hex(y.sigIgn))") }
                if x.sigCgt != y.sigCgt { d.append("\(w): caught signals \(hex(x.sigCgt)) -> \(hex(y.sigCgt))") }
                for t in x.threads {
                    if let u = y.threads.first(where: { $0.tid == t.tid }), u.sigBlk != t.sigBlk, !u.maskIsTemporary, !t.maskIsTemporary {
                        d.append("\(w): tid \(t.tid): blocked signals \(hex(t.sigBlk)) -> \(hex(u.sigBlk))")
                    }
                }
            }
            if !ignore.contains(.maps) { d += maps(x.maps, y.maps, who: w) }
            if !ignore.contains(.fds) { d += fds(x.fds, y.fds, who: w, flags: !ignore.contains(.fdFlags)) }
        }
        return d
    }

    static func maps(_ a: [VisibleState.Map], _ b: [VisibleState.Map], who w: String) -> [String] {
        var d: [String] = []
        // Keyed by range: a VMA that kept its place but changed is one message, not two.
        let byRange = Dictionary(b.map { ($0.range, $0) }, uniquingKeysWith: { x, _ in x })
        let before = Set(a.map(\.range))
        for m in a {
            guard let n = byRange[m.range] else { d.append("\(w): map \(m.text) is gone"); continue }
            if m.perms != n.perms { d.append("\(w): map \(m.range) \(m.perms) changed to \(n.perms)") }
            if m.offset != n.offset { d.append("\(w): map \(m.range) offset \(hex(m.offset)) changed to \(hex(n.offset))") }
            if m.path != n.path { d.append("\(w): map \(m.range) \(show(m.path)) changed to \(show(n.path))") }
        }
        for n in b where !before.contains(n.range) { d.append("\(w): map \(n.text) appeared") }
        return d
    }

    static func fds(_ a: [VisibleState.Fd], _ b: [VisibleState.Fd], who w: String, flags: Bool) -> [String] {
        var d: [String] = []
        let fa = Dictionary(a.map { ($0.fd, $0) }, uniquingKeysWith: { x, _ in x })
        let fb = Dictionary(b.map { ($0.fd, $0) }, uniquingKeysWith: { x, _ in x })
        // Pipes and sockets are new objects after a restore, with new inode numbers: what must
        // hold is the sharing, so each old inode maps to exactly one new one and back.
        var forward: [String: String] = [:], backward: [String: String] = [:]
        for fd in Set(fa.keys).union(fb.keys).sorted() {
            switch (fa[fd], fb[fd]) {
            case let (u?, v?):
                if let (ku, iu) = anonymousInode(u.target), let (kv, iv) = anonymousInode(v.target), ku == kv {
                    let a = ku + iu, b = kv + iv
                    if let was = forward[a], was != b {
                        d.append("\(w): fd \(fd): \(u.target) became \(v.target), but another fd of \(u.target) became \(kv):[\(was.dropFirst(kv.count))]")
                    } else if let was = backward[b], was != a {
                        d.append("\(w): fd \(fd): \(v.target) now also stands for \(ku):[\(was.dropFirst(ku.count))], a different object before")
                    }
                    forward[a] = b; backward[b] = a
                } else if u.target != v.target { d.append("\(w): fd \(fd): target \(u.target) changed to \(v.target)") }
                if flags && u.flags != v.flags { d.append("\(w): fd \(fd): flags \(oct(u.flags)) changed to \(oct(v.flags))") }
            case let (u?, nil): d.append("\(w): fd \(fd) (\(u.target)) is gone")
            case let (nil, v?): d.append("\(w): fd \(fd) (\(v.target)) appeared")
            case (nil, nil): break
            }
        }
        return d
    }

    /// "pipe:[123]" -> ("pipe", "123"), "net:[4026531833]" -> ("net", ...); an O_TMPFILE file, "/tmp/#123 (deleted)" (named by its
    /// inode, new after a restore) -> ("/tmp/#", "123"); nil for targets that name a path or a
    /// fixed object.
    static func anonymousInode(_ target: String) -> (String, String)? {
        // Namespaces too: a tree's own are new after a restore (the workloads check which).
        for kind in ["pipe", "socket", "net", "uts", "ipc", "pid", "mnt", "cgroup", "user", "time"] where target.hasPrefix(kind + ":[") && target.hasSuffix("]") {
            let n = target.dropFirst(kind.count + 2).dropLast()
            if !n.isEmpty && n.allSatisfy(\.isNumber) { return (kind, String(n)) }
        }
        if target.hasSuffix(" (deleted)"), let hash = target.lastIndex(of: "#"), target[..<hash].hasSuffix("/") {
            let n = target[target.index(after: hash)...].dropLast(" (deleted)".count)
            if !n.isEmpty && n.allSatisfy(\.isNumber) { return (String(target[...hash]), String(n)) }
        }
        return nil
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
    static func oct(_ v: Int32) -> String { v < 0 ? "?" : "0" + String(v, radix: 8) }
    static func show(_ p: String) -> String { p.isEmpty ? "[anon]" : p }
    static func list(_ t: [Int32]) -> String { "[" + t.map(String.init).joined(separator: ",") + "]" }
}
