import Engine

/// What zdtm can see of a workload's tree from outside, recorded before and after C/R.
public struct VisibleState: Equatable, Sendable {
    public struct Thread: Equatable, Sendable {
        public var tid: Int32
        public var sigBlk: UInt64
    }
    public struct Fd: Equatable, Sendable {
        public var fd: Int32
        public var target: String
        public var flags: Int32
    }
    public struct Process: Equatable, Sendable {
        public var pid: Int32
        public var ppid: Int32
        public var pgid: Int32
        public var sid: Int32
        public var comm: String
        public var threads: [Thread]
        public var maps: [String]
        public var fds: [Fd]
        public var cwd: String
        public var sigIgn: UInt64
        public var sigCgt: UInt64
    }
    public var processes: [Process]

    public var pids: [Int32] { processes.map(\.pid) }
}

public enum StateRecorder {
    /// Walks the tree from `root` through the children files. Processes that vanish mid-walk are skipped.
    public static func record(root: Int32, proc: ProcReader = ProcReader()) throws -> VisibleState {
        var out: [VisibleState.Process] = []
        var queue = [root]
        var seen: Set<Int32> = []
        while let pid = queue.first {
            queue.removeFirst()
            guard seen.insert(pid).inserted else { continue }
            do {
                let st = try proc.stat(pid: pid)
                let status = try proc.status(pid: pid)
                var threads: [VisibleState.Thread] = []
                for t in try proc.tasks(pid: pid) {
                    guard let ts = try? proc.taskStatus(pid: pid, tid: t) else { continue }
                    threads.append(.init(tid: t, sigBlk: ts.sigBlk))
                }
                let maps = try proc.maps(pid: pid).map { m in
                    "\(String(m.start, radix: 16))-\(String(m.end, radix: 16)) \(m.permString) \(String(m.offset, radix: 16)) \(m.path)"
                }
                var fds: [VisibleState.Fd] = []
                for fd in (try? proc.fds(pid: pid)) ?? [] {
                    guard let target = try? proc.fdTarget(pid: pid, fd: fd) else { continue }
                    let flags = (try? proc.fdinfo(pid: pid, fd: fd).flags) ?? -1
                    fds.append(.init(fd: fd, target: target, flags: flags))
                }
                let cwd = (try? proc.cwd(pid: pid)) ?? "?"
                out.append(.init(pid: pid, ppid: st.ppid, pgid: st.pgrp, sid: st.session, comm: st.comm,
                                 threads: threads, maps: maps, fds: fds, cwd: cwd, sigIgn: status.sigIgn, sigCgt: status.sigCgt))
                queue.append(contentsOf: (try? proc.allChildren(pid: pid)) ?? [])
            } catch ProcError.gone {
                if pid == root { throw ProcError.gone(pid: pid) }
            }
        }
        return VisibleState(processes: out.sorted { $0.pid < $1.pid })
    }

    /// Differences between two records, one human-readable line each. `ignore` names parts
    /// to skip: "maps", "fds", "fd-flags", "sigmask", "ppid".
    public static func compare(_ a: VisibleState, _ b: VisibleState, ignore: Set<String> = []) -> [String] {
        var d: [String] = []
        let pa = Set(a.pids), pb = Set(b.pids)
        for p in pa.subtracting(pb).sorted() { d.append("process \(p) is gone") }
        for p in pb.subtracting(pa).sorted() { d.append("process \(p) appeared") }
        let rootPid = a.processes.first?.pid
        for x in a.processes {
            guard let y = b.processes.first(where: { $0.pid == x.pid }) else { continue }
            let w = "pid \(x.pid)"
            // The root's parent is whoever reaps it (zdtm), which a restore may legitimately change.
            if x.ppid != y.ppid && !(ignore.contains("ppid") || x.pid == rootPid) { d.append("\(w): ppid \(x.ppid) -> \(y.ppid)") }
            if x.pgid != y.pgid { d.append("\(w): pgid \(x.pgid) -> \(y.pgid)") }
            if x.sid != y.sid { d.append("\(w): sid \(x.sid) -> \(y.sid)") }
            if x.comm != y.comm { d.append("\(w): comm \(x.comm) -> \(y.comm)") }
            if x.cwd != y.cwd { d.append("\(w): cwd \(x.cwd) -> \(y.cwd)") }
            let ta = x.threads.map(\.tid), tb = y.threads.map(\.tid)
            if ta != tb { d.append("\(w): threads \(ta) -> \(tb)") }
            if !ignore.contains("sigmask") {
                if x.sigIgn != y.sigIgn { d.append("\(w): ignored signals \(hex(x.sigIgn)) -> \(hex(y.sigIgn))") }
                if x.sigCgt != y.sigCgt { d.append("\(w): caught signals \(hex(x.sigCgt)) -> \(hex(y.sigCgt))") }
                for t in x.threads {
                    if let u = y.threads.first(where: { $0.tid == t.tid }), u.sigBlk != t.sigBlk {
                        d.append("\(w): tid \(t.tid) blocked signals \(hex(t.sigBlk)) -> \(hex(u.sigBlk))")
                    }
                }
            }
            if !ignore.contains("maps") { d.append(contentsOf: diffLines(x.maps, y.maps, what: "\(w): map")) }
            if !ignore.contains("fds") {
                let fa = Dictionary(uniqueKeysWithValues: x.fds.map { ($0.fd, $0) })
                let fb = Dictionary(uniqueKeysWithValues: y.fds.map { ($0.fd, $0) })
                for fd in Set(fa.keys).union(fb.keys).sorted() {
                    switch (fa[fd], fb[fd]) {
                    case let (u?, v?):
                        if u.target != v.target { d.append("\(w): fd \(fd): target \(u.target) -> \(v.target)") }
                        if u.flags != v.flags && !ignore.contains("fd-flags") {
                            d.append("\(w): fd \(fd): flags 0\(String(u.flags, radix: 8)) -> 0\(String(v.flags, radix: 8))")
                        }
                    case let (u?, nil): d.append("\(w): fd \(fd) (\(u.target)) is gone")
                    case let (nil, v?): d.append("\(w): fd \(fd) (\(v.target)) appeared")
                    default: break
                    }
                }
            }
        }
        return d
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    static func diffLines(_ a: [String], _ b: [String], what: String) -> [String] {
        let sa = Set(a), sb = Set(b)
        return a.filter { !sb.contains($0) }.map { "\(what) \($0) is gone or changed" }
            + b.filter { !sa.contains($0) }.map { "\(what) \($0) appeared" }
    }
}
