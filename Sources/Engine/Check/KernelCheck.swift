import CKernel
import Glibc

/// One kernel feature `cryo check` probes.
public struct FeatureResult: Sendable {
    public let name: String
    public let available: Bool
    /// Needed for every dump and restore (as opposed to one mode or one fd kind).
    public let required: Bool
    public let detail: String
}

/// Which dirty-page tracker incremental dumps use on this kernel.
public enum DirtyTrackingBackend: String, Sendable {
    case uffdWriteProtect = "userfaultfd write-protect (async) + PAGEMAP_SCAN"
    case softDirty = "soft-dirty"
    case none = "none"
}

/// Probes the running kernel for what cryo needs. Each probe runs against a throwaway child or
/// cryo itself, never against a user's process.
public enum KernelCheck {
    public static func run() -> [FeatureResult] {
        var out: [FeatureResult] = []
        let child = ck_clone3_stopped_child(0, 0)
        defer {
            if child > 0 { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, __WALL) }
        }
        out.append(probePtraceSeize(child))
        out.append(probeProcessVmReadv(child))
        out.append(probePidfdGetfd(child))
        out.append(probeClone3SetTid())
        let uffd = probeUffdWPAsync()
        out.append(uffd)
        let scan = probePagemapScan()
        out.append(scan)
        let soft = probeSoftDirty()
        out.append(soft)
        out.append(probeTCPRepair())
        for ns in namespaces { out.append(probeNamespace(ns.name, flag: ns.flag, required: ns.required)) }
        let backend = dirtyBackend(uffdWP: uffd.available && scan.available, softDirty: soft.available)
        out.append(FeatureResult(name: "dirty tracking", available: backend != .none, required: false,
                                 detail: backend == .none ? "none: pre-dump and --track-mem cannot work" : "in use for pre-dump and --track-mem: " + backend.rawValue))
        return out
    }

    public static func dirtyBackend(uffdWP: Bool, softDirty: Bool) -> DirtyTrackingBackend {
        if uffdWP { return .uffdWriteProtect }
        if softDirty { return .softDirty }
        return .none
    }

    static let namespaces: [(name: String, flag: Int32, required: Bool)] = [
        ("mnt", 0x0002_0000, false), ("uts", 0x0400_0000, false), ("ipc", 0x0800_0000, false),
        ("user", 0x1000_0000, false), ("pid", 0x2000_0000, false), ("net", 0x4000_0000, false),
        ("cgroup", 0x0200_0000, false), ("time", 0x80, false),
    ]

    static func errText(_ e: Int32) -> String { String(cString: strerror(e)) }

    static func probePtraceSeize(_ child: pid_t) -> FeatureResult {
        let name = "ptrace seize/interrupt"
        guard child > 0 else { return FeatureResult(name: name, available: false, required: true, detail: "cannot start a probe child: \(errText(-child))") }
        do {
            try Ptrace.seize(child, options: [])
            try Ptrace.interrupt(child)
            _ = try WaitStatus.wait(child)
            let x = try Ptrace.getXState(child)
            let rseq = (try? Ptrace.rseqConfiguration(child)) != nil
            try Ptrace.detach(child)
            return FeatureResult(name: name, available: true, required: true,
                                 detail: "xstate \(x.count) bytes, rseq configuration \(rseq ? "readable" : "not readable")")
        } catch {
            return FeatureResult(name: name, available: false, required: true, detail: "\(error)")
        }
    }

    static func probeProcessVmReadv(_ child: pid_t) -> FeatureResult {
        let name = "process_vm_readv"
        guard child > 0 else { return FeatureResult(name: name, available: false, required: true, detail: "no probe child") }
        // The child is a copy of us: the same global holds the same value at the same address.
        let marker = probeMarker
        do {
            var got: UInt64 = 0
            let addr = withUnsafePointer(to: &probeMarkerStorage) { UInt64(UInt(bitPattern: $0)) }
            _ = try withUnsafeMutableBytes(of: &got) { try Sys.processVmRead(pid: child, local: $0.baseAddress!, remote: addr, len: 8) }
            return FeatureResult(name: name, available: got == marker, required: true,
                                 detail: got == marker ? "ok" : "read back 0x\(String(got, radix: 16))")
        } catch {
            return FeatureResult(name: name, available: false, required: true, detail: "\(error)")
        }
    }

    static func probePidfdGetfd(_ child: pid_t) -> FeatureResult {
        let name = "pidfd_open + pidfd_getfd"
        guard child > 0 else { return FeatureResult(name: name, available: false, required: true, detail: "no probe child") }
        do {
            let pidfd = try Sys.pidfdOpen(child)
            defer { close(pidfd) }
            // fd of the probe child that certainly exists: the one it shares with us for the log or stdin
            var fd: Int32 = -1
            for cand in Int32(0)...Int32(2) where fcntl(cand, F_GETFD) >= 0 { fd = cand; break }
            if fd < 0 { return FeatureResult(name: name, available: true, required: true, detail: "pidfd_open ok; no fd to copy") }
            let copy = try Sys.pidfdGetfd(pidfd: pidfd, fd: fd)
            close(copy)
            return FeatureResult(name: name, available: true, required: true, detail: "ok")
        } catch {
            return FeatureResult(name: name, available: false, required: true, detail: "\(error)")
        }
    }

    static func probeClone3SetTid() -> FeatureResult {
        let name = "clone3 set_tid"
        let pidMax = Int32((try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "32768") ?? 32768
        var lastErr: Int32 = 0
        for attempt in 0..<16 {
            let want = pidMax - 100 - Int32(attempt * 37)
            if access("/proc/\(want)", F_OK) == 0 { continue }
            let p = ck_clone3_stopped_child(want, 0)
            if p < 0 { lastErr = -p; if -p == EEXIST { continue }; break }
            kill(p, SIGKILL)
            var st: Int32 = 0
            waitpid(p, &st, __WALL)
            return FeatureResult(name: name, available: p == want, required: true,
                                 detail: p == want ? "ok (created pid \(want))" : "asked for \(want), got \(p)")
        }
        return FeatureResult(name: name, available: false, required: true, detail: errText(lastErr))
    }

    static func probeUffdWPAsync() -> FeatureResult {
        let name = "userfaultfd WP_ASYNC"
        let fd = Int32(truncatingIfNeeded: ck_syscall6(SyscallNumber.userfaultfd.rawValue, Int(O_CLOEXEC | O_NONBLOCK), 0, 0, 0, 0, 0))
        if fd < 0 { return FeatureResult(name: name, available: false, required: false, detail: "userfaultfd: \(errText(ck_errno()))") }
        defer { close(fd) }
        var api = ck_uffdio_api(api: CK_UFFD_API, features: CK_UFFD_FEATURE_WP_ASYNC | CK_UFFD_FEATURE_WP_UNPOPULATED, ioctls: 0)
        if ck_ioctl(fd, UInt(CK_UFFDIO_API), &api) < 0 {
            return FeatureResult(name: name, available: false, required: false, detail: "UFFDIO_API: \(errText(ck_errno()))")
        }
        return FeatureResult(name: name, available: true, required: false, detail: "features 0x\(String(api.features, radix: 16))")
    }

    static func probePagemapScan() -> FeatureResult {
        let name = "PAGEMAP_SCAN"
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return FeatureResult(name: name, available: false, required: false, detail: "open pagemap: \(errText(errno))") }
        defer { close(fd) }
        let len = 4 * 4096
        guard let mem = mmap(nil, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mem != MAP_FAILED else {
            return FeatureResult(name: name, available: false, required: false, detail: "mmap failed")
        }
        defer { munmap(mem, len) }
        mem.storeBytes(of: 1, as: UInt8.self)
        var regions = [ck_page_region](repeating: ck_page_region(), count: 4)
        let n = regions.withUnsafeMutableBufferPointer { rp -> Int32 in
            let start = UInt64(UInt(bitPattern: mem))
            var arg = ck_pm_scan_arg(size: UInt64(MemoryLayout<ck_pm_scan_arg>.size), flags: 0, start: start,
                                     end: start + UInt64(len), walk_end: 0, vec: UInt64(UInt(bitPattern: rp.baseAddress)),
                                     vec_len: 4, max_pages: 0, category_inverted: 0, category_mask: CK_PAGE_IS_PRESENT,
                                     category_anyof_mask: 0, return_mask: CK_PAGE_IS_PRESENT)
            return ck_ioctl(fd, UInt(CK_PAGEMAP_SCAN), &arg)
        }
        if n < 0 { return FeatureResult(name: name, available: false, required: false, detail: errText(ck_errno())) }
        return FeatureResult(name: name, available: n == 1, required: false, detail: "found \(n) present region(s) in a 1-page-touched probe")
    }

    static func probeSoftDirty() -> FeatureResult {
        let name = "soft-dirty"
        guard let mem = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mem != MAP_FAILED else {
            return FeatureResult(name: name, available: false, required: false, detail: "mmap failed")
        }
        defer { munmap(mem, 4096) }
        mem.storeBytes(of: 1, as: UInt8.self)
        let cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        if cr < 0 { return FeatureResult(name: name, available: false, required: false, detail: "clear_refs: \(errText(errno))") }
        _ = write(cr, "4", 1)
        close(cr)
        mem.storeBytes(of: 2, as: UInt8.self)
        let pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        if pm < 0 { return FeatureResult(name: name, available: false, required: false, detail: "pagemap: \(errText(errno))") }
        defer { close(pm) }
        var entry: UInt64 = 0
        let off = off_t(UInt(bitPattern: mem) / 4096 * 8)
        guard pread(pm, &entry, 8, off) == 8 else { return FeatureResult(name: name, available: false, required: false, detail: "pagemap read failed") }
        let dirty = entry & (1 << 55) != 0
        return FeatureResult(name: name, available: dirty, required: false,
                             detail: dirty ? "ok" : "written page not marked soft-dirty (CONFIG_MEM_SOFT_DIRTY off)")
    }

    static func probeTCPRepair() -> FeatureResult {
        let name = "TCP_REPAIR"
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if s < 0 { return FeatureResult(name: name, available: false, required: false, detail: errText(errno)) }
        defer { close(s) }
        var one: Int32 = 1
        let r = setsockopt(s, Int32(IPPROTO_TCP), 19 /* TCP_REPAIR */, &one, socklen_t(MemoryLayout<Int32>.size))
        return FeatureResult(name: name, available: r == 0, required: false, detail: r == 0 ? "ok" : errText(errno))
    }

    static func probeNamespace(_ ns: String, flag: Int32, required: Bool) -> FeatureResult {
        let name = "\(ns) namespace"
        if access("/proc/self/ns/\(ns)", F_OK) != 0 {
            return FeatureResult(name: name, available: false, required: required, detail: "/proc/self/ns/\(ns) missing")
        }
        let r = ck_try_unshare(flag)
        return FeatureResult(name: name, available: r == 0, required: required,
                             detail: r == 0 ? "unshare ok" : "unshare: \(errText(r < 0 ? -r : r))")
    }
}

let probeMarker: UInt64 = 0x6372_796f_5052_4f42
nonisolated(unsafe) var probeMarkerStorage: UInt64 = probeMarker
