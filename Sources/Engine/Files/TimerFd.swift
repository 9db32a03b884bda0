import CKernel
import Glibc

/// timerfd: clock, expirations not yet read (ticks), interval and when it fires next.
///
/// A periodic timer that fired and was not read since is not re-armed by the kernel until
/// someone reads it or asks for its time (the periods missed meanwhile are counted then), so
/// its fdinfo shows ticks 1 and no time left. Dump and restore therefore call timerfd_gettime
/// first, which folds the missed periods into ticks and re-arms the timer, changing nothing
/// a reader could tell apart.
///
/// fdinfo shows the time left, whatever flags the timer was armed with. A relative timer
/// resumes with that time left (the downtime between dump and restore does not count, as for
/// CRIU). A TFD_TIMER_ABSTIME timer keeps its absolute deadline on its clock, so for such
/// timers cryo records the deadline (now + time left, taken at dump) in vsec/vnsec where CRIU
/// records the time left; a deadline passed during the downtime fires at once on restore.
enum TimerFd: FdKind {
    static let name = "timerfd"
    static let type = Img_FdTypes.timerfd
    static let absTime: UInt32 = 1  // TFD_TIMER_ABSTIME
    /// TFD_IOC_SET_TICKS, _IOW('T', 0, u64)
    static let setTicks: UInt = 0x4008_5400

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:[timerfd]" }

    static func now(_ clock: Int32) throws -> (sec: UInt64, nsec: UInt64) {
        var ts = timespec()
        // The *_ALARM clocks read like their base clocks.
        let base: Int32 = clock == 8 /* REALTIME_ALARM */ ? 0 : clock == 9 /* BOOTTIME_ALARM */ ? 7 : clock
        guard clock_gettime(clockid_t(base), &ts) == 0 else { throw SystemCallError(call: "clock_gettime", errno: errno, context: "clock \(clock)") }
        return (UInt64(ts.tv_sec), UInt64(ts.tv_nsec))
    }

    static func add(_ a: (sec: UInt64, nsec: UInt64), _ b: (sec: UInt64, nsec: UInt64)) -> (sec: UInt64, nsec: UInt64) {
        let ns = a.nsec + b.nsec
        return (a.sec + b.sec + ns / 1_000_000_000, ns % 1_000_000_000)
    }

    /// timerfd_gettime on `fd`: (interval, value) as (sec, nsec) pairs.
    static func gettime(_ fd: Int32, what: String) throws -> [Int64] {
        var spec = [Int64](repeating: 0, count: 4)
        try spec.withUnsafeMutableBytes { _ = try Sys.call(.timerfdGettime, Int(fd), Int(bitPattern: $0.baseAddress!), context: what) }
        return spec
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        _ = try gettime(try ctx.copy(of: f), what: "pid \(f.pid) fd \(f.fd)")
        guard let t = try ctx.proc.fdinfo(pid: f.pid, fd: f.fd).timerfd else {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "fdinfo shows no timerfd state")
        }
        var e = Img_TimerfdEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        e.clockid = UInt32(bitPattern: t.clockid)
        e.ticks = t.ticks
        e.settimeFlags = UInt32(bitPattern: t.settimeFlags)
        var value = (sec: t.valueSec, nsec: t.valueNsec)
        if e.settimeFlags & absTime != 0 && (value.sec != 0 || value.nsec != 0) {
            value = add(try now(t.clockid), value)
        }
        e.vsec = value.sec; e.vnsec = value.nsec
        e.isec = t.intervalSec; e.insec = t.intervalNsec
        entry.tfd = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.tfd
        let what = "timerfd id \(entry.id)"
        let fd = Int32(try Sys.call(.timerfdCreate, Int(e.clockid), Int(O_CLOEXEC), context: what))
        do {
            var spec: [Int64] = [Int64(e.isec), Int64(e.insec), Int64(e.vsec), Int64(e.vnsec)]
            // Only ABSTIME and CANCEL_ON_SET are settime flags; a disarmed timer stays disarmed.
            let flags = Int(e.settimeFlags & 3)
            try spec.withUnsafeMutableBytes { try Sys.call(.timerfdSettime, Int(fd), flags, Int(bitPattern: $0.baseAddress!), 0, context: what) }
            // Expirations since the deadline (one already passed fires at once) are added to
            // the dumped ones: TFD_IOC_SET_TICKS replaces the count.
            _ = try gettime(fd, what: what)
            let since = try ProcReader().fdinfo(pid: getpid(), fd: fd).timerfd?.ticks ?? 0
            if e.ticks + since > 0 {
                var ticks = e.ticks + since
                guard ck_ioctl(fd, setTicks, &ticks) == 0 else { throw SystemCallError(call: "ioctl(TFD_IOC_SET_TICKS)", errno: errno, context: what) }
            }
            try FileFlags.set(fd, e.flags, what: what)
        } catch {
            close(fd)
            throw error
        }
        return try ctx.install(fd, id: entry.id, what: what)
    }
}
