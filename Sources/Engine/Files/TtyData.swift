import CKernel
import Foundation
import Glibc

/// Bytes in flight in a pty, both ways, and a packet-mode status byte (docs/TTY.md).
/// A tty queue cannot be read without consuming it, so the dump reads it and, when the tree
/// goes on (a failed dump, --leave-running), puts it back the way restore does. Putting back
/// never goes through the line discipline's processing: TIOCSTI hands each byte to it
/// synchronously, with the slave's termios set so that the byte is stored as it was.
struct PtyQueues {
    /// What the slave wrote (output processing and echoes done) that the master has not read.
    var fromSlave: [UInt8] = []
    /// The slave's input after its line discipline: complete lines (with their terminator
    /// byte; an EOF is not stored in them), then a partial line, or everything in raw mode.
    var lines: [(bytes: [UInt8], eof: Bool)] = []
    var partial: [UInt8] = []
    /// The packet-mode status byte waiting on the master (TIOCPKT_*), 0 for none.
    var status: UInt8 = 0

    var slaveInputEmpty: Bool { lines.isEmpty && partial.isEmpty }
    var isEmpty: Bool { fromSlave.isEmpty && slaveInputEmpty && status == 0 }

    /// The slave's input as one tty-data entry read from end `id`.
    func slaveEntry(id: UInt32) -> Img_TtyDataEntry {
        var e = Img_TtyDataEntry()
        e.ttyID = id
        e.slaveQueue = true
        var all: [UInt8] = []
        for l in lines {
            all += l.bytes
            e.lineEnd.append(UInt32(all.count))
            e.lineEof.append(l.eof)
        }
        e.data = Data(all + partial)
        return e
    }

    mutating func add(_ e: Img_TtyDataEntry) throws {
        let b = [UInt8](e.data)
        guard e.slaveQueue else { fromSlave = b; return }
        guard e.lineEnd.count == e.lineEof.count else { throw PtyQueueError("tty-data entry of \(e.ttyID): \(e.lineEnd.count) line ends but \(e.lineEof.count) EOF marks") }
        var at = 0
        for (end, eof) in zip(e.lineEnd, e.lineEof) {
            guard Int(end) >= at, Int(end) <= b.count else { throw PtyQueueError("tty-data entry of \(e.ttyID): line end \(end) outside its \(b.count) bytes") }
            lines.append((Array(b[at..<Int(end)]), eof))
            at = Int(end)
        }
        partial = Array(b[at...])
    }
}

struct PtyQueueError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// struct termios2 as bytes (x86_64): flags at 0, 4, 8, 12, c_line at 16, c_cc from 17.
struct Termios2 {
    var b: [UInt8]
    static let icanon: UInt32 = 0o2, echo: UInt32 = 0o10, iexten: UInt32 = 0o100000, extproc: UInt32 = 0o200000
    static let ixon: UInt32 = 0o2000, opost: UInt32 = 0o1
    static let vtime = 5, vmin = 6, vstart = 8, vstop = 9, veof = 4, veol = 11, vlnext = 15, veol2 = 16

    var iflag: UInt32 { get { b.u32(at: 0) } set { put(newValue, at: 0) } }
    var oflag: UInt32 { get { b.u32(at: 4) } set { put(newValue, at: 4) } }
    var lflag: UInt32 { get { b.u32(at: 12) } set { put(newValue, at: 12) } }
    subscript(cc i: Int) -> UInt8 { get { b[17 + i] } set { b[17 + i] = newValue } }
    var canonical: Bool { lflag & Self.icanon != 0 && lflag & Self.extproc == 0 }
    /// Output flow control by ^S/^Q, as the pty reports it in packet mode (DOSTOP/NOSTOP).
    var flow: Bool { iflag & Self.ixon != 0 && self[cc: Self.vstop] == 0x13 && self[cc: Self.vstart] == 0x11 }
    /// Bytes that end a canonical line when read back (besides EOF, which is not stored).
    var terminators: Set<UInt8> {
        var t: Set<UInt8> = [0x0a]
        if self[cc: Self.veol] != 0 { t.insert(self[cc: Self.veol]) }
        if lflag & Self.iexten != 0 && self[cc: Self.veol2] != 0 { t.insert(self[cc: Self.veol2]) }
        return t
    }

    private mutating func put(_ v: UInt32, at o: Int) {
        for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }

    static func get(_ fd: Int32) throws -> Termios2 {
        var b = [UInt8](repeating: 0, count: 64)
        guard ck_ioctl(fd, TtyIoctl.getTermios2, &b) == 0 else { throw PtyQueueError("TCGETS2: \(String(cString: strerror(errno)))") }
        return Termios2(b: b)
    }

    func set(_ fd: Int32) throws {
        var c = b
        guard ck_ioctl(fd, TtyIoctl.setTermios2, &c) == 0 else { throw PtyQueueError("TCSETS2: \(String(cString: strerror(errno)))") }
    }
}

/// Reading a pty's queues out (dump) and queueing them again (restore, and a dump that leaves
/// the tree running), on cryo's own fds of the pty.
enum PtyQueueIO {
    static let sti: UInt = 0x5412, tcflsh: UInt = 0x540b, tcxonc: UInt = 0x540a
    static let pktFlushRead: UInt8 = 1, pktFlushWrite: UInt8 = 2, pktStop: UInt8 = 4, pktStart: UInt8 = 8
    static let pktNoStop: UInt8 = 16, pktDoStop: UInt8 = 32, pktIoctl: UInt8 = 64
    /// n_tty's buffer holds N_TTY_BUF_SIZE - 1 bytes.
    static let ldiscRoom = 4095

    static func revents(_ fd: Int32, _ events: Int32 = POLLIN | POLLPRI | POLLOUT) -> Int32 {
        var p = pollfd(fd: fd, events: Int16(events), revents: 0)
        _ = poll(&p, 1, 0)
        return Int32(p.revents)
    }

    static func inq(_ fd: Int32) throws -> Int {
        var n: Int32 = 0
        guard ck_ioctl(fd, TtyIoctl.fionread, &n) == 0 else { throw PtyQueueError("FIONREAD: \(String(cString: strerror(errno)))") }
        return Int(n)
    }

    static func readSome(_ fd: Int32, max: Int) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: max)
        let n = read(fd, &buf, max)
        guard n >= 0 else { throw PtyQueueError("read: \(String(cString: strerror(errno)))") }
        return Array(buf.prefix(n))
    }

    /// The master's read queue (and the status byte in packet mode). Reads only what FIONREAD
    /// shows, so a blocking fd never waits; poll moves what is still in the flip buffer in.
    static func drainMaster(_ m: Int32, packet: Bool, into q: inout PtyQueues) throws {
        if packet && revents(m) & POLLPRI != 0 {
            let s = try readSome(m, max: 1)
            q.status = s.first ?? 0
        }
        while true {
            var n = try inq(m)
            if n == 0 { _ = revents(m); n = try inq(m) }
            if n == 0 { return }
            let got = try readSome(m, max: n + (packet ? 1 : 0))
            guard !got.isEmpty else { return }
            q.fromSlave += packet ? Array(got.dropFirst()) : got
            guard q.fromSlave.count <= 1 << 20 else { throw PtyQueueError("more than 1 MiB queued to the master") }
        }
    }

    /// The slave's input: complete lines by canonical reads (each stops at its terminator,
    /// poll tells whether one is there), then the partial line, which only a read without
    /// ICANON sees. Turning ICANON off and on again empties nothing: n_tty keeps its buffer
    /// and only forgets the line marks, and the buffer is empty by then.
    static func drainSlave(_ s: Int32, termios t: Termios2, into q: inout PtyQueues) throws {
        if t.lflag & Termios2.extproc != 0 {
            if try inq(s) > 0 { throw PtyQueueError("EXTPROC") }
            return
        }
        if t.canonical {
            let ends = t.terminators
            while revents(s, POLLIN) & POLLIN != 0 {
                let seg = try readSome(s, max: 8192)
                q.lines.append((seg, seg.last.map { !ends.contains($0) } ?? true))
                guard q.lines.count < 100_000 else { throw PtyQueueError("no end to its lines") }
            }
        }
        var raw = t
        raw.lflag &= ~Termios2.icanon
        raw[cc: Termios2.vmin] = 0
        raw[cc: Termios2.vtime] = 0
        try raw.set(s)
        defer { try? t.set(s) }
        while true {
            let got = try readSome(s, max: 8192)
            if got.isEmpty { break }
            q.partial += got
        }
        try t.set(s)
    }

    /// Why these queues cannot be put back exactly, or nil.
    static func refusal(_ q: PtyQueues, termios t: Termios2, packet: Bool) -> String? {
        if t.lflag & Termios2.extproc != 0 && q.status != 0 && q.status != pktIoctl {
            return "a packet-mode status byte \(q.status) with EXTPROC on, which cryo cannot make again"
        }
        if q.status & pktIoctl != 0 && t.lflag & Termios2.extproc == 0 {
            return "a packet-mode status byte \(q.status) (TIOCPKT_IOCTL) without EXTPROC, which cryo cannot make again"
        }
        if q.status & pktStop != 0 { return "its output stopped (packet status \(q.status))" }
        if q.status & pktDoStop != 0 && !t.flow || q.status & pktNoStop != 0 && t.flow {
            return "a packet-mode status byte \(q.status) that does not match its termios' flow control"
        }
        if !t.canonical && t.iflag & Termios2.ixon != 0 {
            let flowChars: Set<UInt8> = [t[cc: Termios2.vstart], t[cc: Termios2.vstop]]
            if q.partial.contains(where: { flowChars.contains($0) }) {
                return "its input holds the START or STOP character in raw mode with IXON on: queued again it would start or stop the output"
            }
        }
        return nil
    }

    /// Queues `q` again on a pty whose queues are empty: the status byte first (made by the
    /// same operations that make it, which flush empty queues), then the slave's input byte
    /// by byte (TIOCSTI) under a termios that only stores (no echo, no signals, no input
    /// mapping; in canonical mode ^V quotes what would be special), then the master's.
    static func refill(master m: Int32, slave s: Int32, termios t: Termios2, _ q: PtyQueues) throws {
        func ctl(_ fd: Int32, _ req: UInt, _ arg: Int, _ what: String) throws {
            guard ck_ioctl_long(fd, req, UInt(arg)) == 0 else { throw PtyQueueError("\(what): \(String(cString: strerror(errno)))") }
        }
        if q.status & pktFlushRead != 0 { try ctl(s, tcflsh, 0, "TCFLSH TCIFLUSH") }
        if q.status & pktFlushWrite != 0 { try ctl(s, tcflsh, 1, "TCFLSH TCOFLUSH") }
        if q.status & pktStart != 0 { try ctl(s, tcxonc, 0, "TCXONC TCOOFF"); try ctl(s, tcxonc, 1, "TCXONC TCOON") }
        if q.status & (pktDoStop | pktNoStop) != 0 {
            var other = t
            other.iflag ^= Termios2.ixon
            try other.set(s)
            try t.set(s)
        }
        if q.status & pktIoctl != 0 { try t.set(s) }
        if !q.slaveInputEmpty { try refillSlave(s, termios: t, q) }
        if !q.fromSlave.isEmpty {
            let head = q.fromSlave.prefix(ldiscRoom)
            for var c in head { guard ck_ioctl(m, sti, &c) == 0 else { throw PtyQueueError("TIOCSTI on the master: \(String(cString: strerror(errno)))") } }
            let rest = Array(q.fromSlave.dropFirst(ldiscRoom))
            if !rest.isEmpty {
                // Beyond n_tty's buffer: written by the slave, as the bytes first came, without OPOST.
                var plain = t
                plain.oflag &= ~Termios2.opost
                try plain.set(s)
                defer { try? t.set(s) }
                var off = 0
                while off < rest.count {
                    let n = rest[off...].withUnsafeBytes { write(s, $0.baseAddress, $0.count) }
                    guard n > 0 else { throw PtyQueueError("write to the slave: \(String(cString: strerror(errno)))") }
                    off += n
                }
                try t.set(s)
            }
        }
    }

    static func refillSlave(_ s: Int32, termios t: Termios2, _ q: PtyQueues) throws {
        var w = t
        w.iflag &= Termios2.ixon  // flow control stays, so that packet mode reports no change
        w.lflag = t.canonical ? Termios2.icanon | Termios2.iexten : 0
        let keep: Set<Int> = [Termios2.vstart, Termios2.vstop, Termios2.vmin, Termios2.vtime]
        for i in 0..<19 where !keep.contains(i) { w[cc: i] = 0 }
        var special: Set<UInt8> = [0x0a]
        if t.iflag & Termios2.ixon != 0 { special.insert(t[cc: Termios2.vstart]); special.insert(t[cc: Termios2.vstop]) }
        special.remove(0)
        let ends = t.terminators
        let free = (1...255).map(UInt8.init).filter { !special.contains($0) && !ends.contains($0) }
        let eof = free[0], lnext = free[1]
        if t.canonical {
            w[cc: Termios2.veof] = eof
            w[cc: Termios2.vlnext] = lnext
            special.formUnion([eof, lnext])
        }
        func put(_ c: UInt8) throws {
            var x = c
            guard ck_ioctl(s, sti, &x) == 0 else { throw PtyQueueError("TIOCSTI on the slave: \(String(cString: strerror(errno)))") }
        }
        func literal(_ bytes: ArraySlice<UInt8>) throws {
            for c in bytes {
                if t.canonical && special.contains(c) { try put(lnext) }
                try put(c)
            }
        }
        try w.set(s)
        defer { try? t.set(s) }
        for l in q.lines {
            if l.eof {
                try literal(l.bytes[...])
                try put(eof)
                continue
            }
            guard let end = l.bytes.last else { continue }
            try literal(l.bytes.dropLast())
            if end == 0x0a { try put(end); continue }
            // An EOL or EOL2 byte ends the line only while it is one: made so for this byte.
            var e = w
            e[cc: Termios2.veol] = end
            try e.set(s)
            try put(end)
            try w.set(s)
        }
        try literal(q.partial[...])
        try t.set(s)
    }
}

/// One pty's queues during a dump: cryo's own fds of it, found while its ends are dumped,
/// and what was read from them.
final class PtyDrain {
    let name: String
    /// Who held the master, to name it in a refusal.
    var pid: Int32 = 0, fd: Int32 = 0
    var master: Int32 = -1, slave: Int32 = -1
    var masterID: UInt32 = 0, slaveID: UInt32?
    var masterInfoIDs: [UInt32] = []
    var termios: Termios2?
    var packet = false
    /// Its slave was closed: cryo opens it to read and refill its input, and closes it again.
    var closedSlavePath: String?
    var queues = PtyQueues()
    var drained = false

    init(name: String) { self.name = name }

    func refuse(_ why: String) -> DumpError { .fdState(pid: pid, fd: fd, target: name, reason: why) }
}

extension TtyDumpState {
    /// Notes an end of a pty of the tree, with a copy of cryo's of it (`c`, the task's own
    /// description: a new description of a slave is opened, so that reading it changes no
    /// flags of the task's).
    func track(_ key: PtyKey, master: Bool, id: UInt32, copy c: Int32, info: Img_TtyInfoEntry, pid: Int32, fd: Int32, slaveHostPath: String) {
        let d = drains[key] ?? PtyDrain(name: "/dev/pts/\(key.index)")
        drains[key] = d
        if master {
            d.masterInfoIDs.append(info.id)
            guard d.master < 0 else { return }
            d.master = fcntl(c, F_DUPFD_CLOEXEC, 0)
            d.masterID = id
            d.pid = pid; d.fd = fd
            d.packet = info.packetMode
            d.termios = Termios2(b: Tty.termiosBytes(info.termios))
            if info.slaveClosed { d.closedSlavePath = slaveHostPath }
        } else if d.slave < 0 {
            d.slave = open("/proc/self/fd/\(c)", O_RDWR | O_NOCTTY | O_CLOEXEC)
            // A locked pty opens no slave: the task's own description serves.
            if d.slave < 0 { d.slave = fcntl(c, F_DUPFD_CLOEXEC, 0) }
            d.slaveID = id
        }
    }

    /// Reads every pty's queues (the last step of the dump that looks at the tree: CRIU's
    /// order too), and refuses what could not be put back exactly. Whatever was read goes
    /// back with putBack if the tree carries on.
    func drain() throws -> [Img_TtyDataEntry] {
        var entries: [Img_TtyDataEntry] = []
        for (_, d) in drains.sorted(by: { $0.key.index < $1.key.index }) where d.master >= 0 {
            guard let t = d.termios else { continue }
            if d.slave < 0, let path = d.closedSlavePath {
                d.slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard d.slave >= 0 else { throw d.refuse("its slave \(path) was closed and cannot be opened to see its input: \(String(cString: strerror(errno)))") }
            }
            d.drained = true
            do {
                try PtyQueueIO.drainMaster(d.master, packet: d.packet, into: &d.queues)
                if d.slave >= 0 { try PtyQueueIO.drainSlave(d.slave, termios: t, into: &d.queues) }
            } catch let e as PtyQueueError where e.description == "EXTPROC" {
                throw d.refuse("\(d.name) has input queued to its slave with EXTPROC on (no line discipline processing of its own), which cryo does not restore")
            } catch let e as PtyQueueError {
                throw d.refuse("reading the queues of \(d.name): \(e)")
            }
            if d.slave >= 0 && d.closedSlavePath == nil && PtyQueueIO.revents(d.slave, POLLOUT) & POLLOUT == 0 {
                throw d.refuse("the output of \(d.name) is stopped (^S or TCOOFF), which cryo does not restore")
            }
            if let why = PtyQueueIO.refusal(d.queues, termios: t, packet: d.packet) { throw d.refuse("\(d.name): \(why)") }
            if !d.queues.fromSlave.isEmpty {
                var e = Img_TtyDataEntry()
                e.ttyID = d.masterID
                e.data = Data(d.queues.fromSlave)
                entries.append(e)
            }
            if !d.queues.slaveInputEmpty { entries.append(d.queues.slaveEntry(id: d.slaveID ?? d.masterID)) }
            if d.queues.status != 0 {
                for i in infos.indices where d.masterInfoIDs.contains(infos[i].id) { infos[i].pktStatus = UInt32(d.queues.status) }
            }
        }
        return entries
    }

    /// Ends the dump's hold on the ptys: the queues read go back first when the tree carries on.
    func finish(putBack: Bool) -> [String] {
        var errors: [String] = []
        for (_, d) in drains.sorted(by: { $0.key.index < $1.key.index }) {
            if putBack && d.drained && !d.queues.isEmpty, let t = d.termios {
                do { try PtyQueueIO.refill(master: d.master, slave: d.slave, termios: t, d.queues) } catch {
                    errors.append("\(d.name): its queues could not be put back: \(error)")
                }
            }
            if d.master >= 0 { close(d.master) }
            if d.slave >= 0 { close(d.slave) }
        }
        drains = [:]
        return errors
    }
}
