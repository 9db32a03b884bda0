import Foundation
import Glibc

/// CriuOpts as the CRIU command line that would ask for the same thing. The RPC holds no logic of
/// its own: cryo parses these words with the CLI's own commands into the same DumpRequest or
/// RestoreRequest, so an option the CLI does not know is refused by name, never dropped.
public struct RPCCommandLine: Sendable {
    /// The request kind the words are for.
    public enum Kind: Sendable { case dump, preDump, restore, pageServer }

    /// Each option's words, with the rpc.proto field they came from (for refusals).
    public private(set) var words: [(field: String, args: [String])] = []
    public var arguments: [String] { words.flatMap(\.args) }

    /// Where the images and work dirs are: images_dir_fd and work_dir_fd are fds of the caller
    /// (the socket's peer), reached through /proc as CRIU does.
    public private(set) var imagesDir: String?
    public private(set) var workDir: String?

    public init(_ o: Rpc_CriuOpts, kind: Kind, peer: Int32) throws {
        if o.hasImagesDirFd && o.imagesDirFd >= 0 {
            imagesDir = try Self.callerDir(peer: peer, fd: o.imagesDirFd, field: "images_dir_fd")
            add("images_dir_fd", "-D", imagesDir!)
        } else {
            throw RPCError.badOption(field: "images_dir_fd", reason: "missing (cryo needs the caller's images folder)")
        }
        if o.hasWorkDirFd && o.workDirFd >= 0 {
            workDir = try Self.callerDir(peer: peer, fd: o.workDirFd, field: "work_dir_fd")
            add("work_dir_fd", "-W", workDir!)
        }
        switch kind {
        case .dump, .preDump:
            guard o.hasPid, o.pid > 0 else {
                throw RPCError.badOption(field: "pid", reason: "missing: cryo does not dump its caller (CRIU's self-dump)")
            }
            add("pid", "-t", "\(o.pid)")
            if o.hasPs { try pageServerClient(o.ps) }
        case .restore:
            if o.hasPs { add("ps", "--page-server") }  // unknown to restore: refused by name
        case .pageServer:
            if o.hasPs {
                if o.ps.hasAddress { add("ps", "--address", o.ps.address) }
                add("ps", "--port", "\(o.ps.port)")
            } else {
                add("ps", "--port", "0")
            }
        }
        if kind == .pageServer {
            // The rest are dump and restore options; CRIU's page server takes none of them.
            return
        }
        // A pre-dump always leaves the tree running.
        if kind != .preDump { flag("leave_running", o.leaveRunning, "--leave-running") }
        flag("leave_stopped", o.leaveStopped, "--leave-stopped")
        flag("ext_unix_sk", o.extUnixSk, "--ext-unix-sk=\(ExtUnixSk.bare)")
        for s in o.unixSkIno { add("unix_sk_ino", "--ext-unix-sk=\(s.inode)") }
        flag("tcp_established", o.tcpEstablished, "--tcp-established")
        flag("evasive_devices", o.evasiveDevices, "--evasive-devices")
        flag("shell_job", o.shellJob, "--shell-job")
        flag("file_locks", o.fileLocks, "--file-locks")
        // CRIU uses root for restore only (the mount namespace's new root).
        if o.hasRoot && kind == .restore { add("root", "--root", o.root) }
        if o.hasParentImg { add("parent_img", "--prev-images-dir", o.parentImg) }
        // A pre-dump always tracks memory; only a dump is asked to.
        if kind != .preDump { flag("track_mem", o.trackMem, "--track-mem") }
        flag("auto_dedup", o.autoDedup, "--auto-dedup")
        flag("link_remap", o.linkRemap, "--link-remap")
        for v in o.veths { add("veths", "--veth-pair", "\(v.ifIn)=\(v.ifOut)") }
        if o.hasCpuCap && o.cpuCap != 0xffff_ffff { add("cpu_cap", "--cpu-cap=\(o.cpuCap)") }
        flag("force_irmap", o.forceIrmap, "--force-irmap")
        if !o.execCmd.isEmpty { add("exec_cmd", ["--exec-cmd", "--"] + o.execCmd) }
        for m in o.extMnt { add("ext_mnt", "--external", "mnt[\(m.key)]:\(m.val)") }
        if o.manageCgroups || o.hasManageCgroupsMode {
            add("manage_cgroups", o.hasManageCgroupsMode ? "--manage-cgroups=\(Self.cgMode(o.manageCgroupsMode))" : "--manage-cgroups=soft")
        }
        for c in o.cgRoot { add("cg_root", "--cgroup-root", c.hasCtrl ? "\(c.ctrl):\(c.path)" : c.path) }
        flag("rst_sibling", o.rstSibling, "--restore-sibling")
        for i in o.inheritFd { add("inherit_fd", "--inherit-fd", "fd[\(i.fd)]:\(i.key)") }
        flag("auto_ext_mnt", o.autoExtMnt, "--ext-mount-map=auto")
        flag("ext_sharing", o.extSharing, "--enable-external-sharing")
        flag("ext_masters", o.extMasters, "--enable-external-masters")
        for m in o.skipMnt { add("skip_mnt", "--skip-mnt", m) }
        for f in o.enableFs { add("enable_fs", "--enable-fs", f) }
        if o.hasGhostLimit && o.ghostLimit != 0x10_0000 { add("ghost_limit", "--ghost-limit", "\(o.ghostLimit)") }
        for p in o.irmapScanPaths { add("irmap_scan_paths", "--irmap-scan-path", p) }
        for e in o.external { add("external", "--external", e) }
        if o.emptyNs != 0 {
            // CRIU's --empty-ns names only net; any other bit is refused there too.
            guard o.emptyNs == UInt32(CloneFlag.newnet) else {
                throw RPCError.badOption(field: "empty_ns", reason: "mask 0x\(String(o.emptyNs, radix: 16)): only net (0x40000000) can be left empty")
            }
            add("empty_ns", "--empty-ns", "net")
        }
        for j in o.joinNs { add("join_ns", "--join-ns", j.hasExtraOpt ? "\(j.ns):\(j.nsFile),\(j.extraOpt)" : "\(j.ns):\(j.nsFile)") }
        if o.hasCgroupProps { add("cgroup_props", "--cgroup-props", o.cgroupProps) }
        if o.hasCgroupPropsFile { add("cgroup_props_file", "--cgroup-props-file", o.cgroupPropsFile) }
        for c in o.cgroupDumpController { add("cgroup_dump_controller", "--cgroup-dump-controller", c) }
        if o.hasFreezeCgroup && kind != .restore { add("freeze_cgroup", "--freeze-cgroup", o.freezeCgroup) }
        if o.hasTimeout { add("timeout", "--timeout", "\(o.timeout)") }
        flag("tcp_skip_in_flight", o.tcpSkipInFlight, "--skip-in-flight")
        flag("weak_sysctls", o.weakSysctls, "--weak-sysctls")
        flag("lazy_pages", o.lazyPages, "--lazy-pages")
        if o.hasStatusFd { add("status_fd", "--status-fd", "\(o.statusFd)") }
        flag("orphan_pts_master", o.orphanPtsMaster, "--orphan-pts-master")
        flag("tcp_close", o.tcpClose, "--tcp-close")
        if o.hasLsmProfile { add("lsm_profile", "--lsm-profile", o.lsmProfile) }
        if o.tls || o.hasTlsCacert || o.hasTlsCacrl || o.hasTlsCert || o.hasTlsKey || o.tlsNoCnVerify { add("tls", "--tls") }
        if o.hasCgroupYard { add("cgroup_yard", "--cgroup-yard", o.cgroupYard) }
        if o.hasPidfdStoreSk { add("pidfd_store_sk", "--pidfd-store-sk", "\(o.pidfdStoreSk)") }
        if o.hasLsmMountContext { add("lsm_mount_context", "--lsm-mount-context", o.lsmMountContext) }
        if o.hasNetworkLock { add("network_lock", "--network-lock", Self.lockMethod(o.networkLock)) }
        flag("mntns_compat_mode", o.mntnsCompatMode, "--mntns-compat-mode")
        flag("skip_file_rwx_check", o.skipFileRwxCheck, "--skip-file-rwx-check")
        flag("unprivileged", o.unprivileged, "--unprivileged")
        flag("display_stats", o.displayStats, "--display-stats")
        // pre_dump_mode (splice or read): cryo copies with process_vm_readv either way, and the
        // images are the same. log_level, log_file, log_to_stderr, notify_scripts and
        // config_file are the RPC session's own.
    }

    /// Options of a CRIU configuration file (runc names /etc/criu/runc.conf; CRIU ignores a
    /// missing one): one option per line, "--" optional, "#" comments. They come after the
    /// RPC's own, as in CRIU, where the file overrides the request.
    public mutating func appendConfigFile(_ path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var parts = line.split(separator: " ", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
            if !parts[0].hasPrefix("-") { parts[0] = "--" + parts[0] }
            add("config_file (\(path))", parts)
        }
    }

    /// The rpc.proto field whose words a CLI parse error names, for the refusal.
    public func field(namedIn message: String) -> String? {
        for w in words.reversed() {
            for a in w.args where a.hasPrefix("-") {
                let opt = String(a.split(separator: "=", maxSplits: 1)[0])
                if message.contains("'\(opt)'") || message.contains("\(opt) ") || message.contains("\(opt):") || message.hasSuffix(opt) { return w.field }
            }
        }
        return nil
    }

    mutating func pageServerClient(_ ps: Rpc_CriuPageServerInfo) throws {
        if ps.hasFd {
            add("ps", "--ps-socket", "\(ps.fd)")
        } else {
            add("ps", ["--page-server"] + (ps.hasAddress ? ["--address", ps.address] : []) + ["--port", "\(ps.port)"])
        }
    }

    mutating func add(_ field: String, _ args: String...) { words.append((field, args)) }
    mutating func add(_ field: String, _ args: [String]) { words.append((field, args)) }
    mutating func flag(_ field: String, _ on: Bool, _ arg: String) { if on { add(field, arg) } }

    /// A directory fd of the caller's, as a path cryo can open (what /proc/PEER/fd/N points at).
    static func callerDir(peer: Int32, fd: Int32, field: String) throws -> String {
        let link = "/proc/\(peer)/fd/\(fd)"
        guard let target = try? ProcReader().fdTarget(pid: peer, fd: fd) else {
            throw RPCError.badOption(field: field, reason: "fd \(fd) is not open in the caller (pid \(peer))")
        }
        var st = stat()
        guard stat(link, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw RPCError.badOption(field: field, reason: "fd \(fd) of pid \(peer) (\(target)) is not a directory")
        }
        // The path itself when it names the same directory (logs and `parent` links read
        // better); else the /proc link, as CRIU uses.
        var st2 = stat()
        if target.hasPrefix("/"), stat(target, &st2) == 0, st2.st_dev == st.st_dev, st2.st_ino == st.st_ino { return target }
        return link
    }

    static func cgMode(_ m: Rpc_CriuCgMode) -> String {
        switch m {
        case .ignore: return "ignore"
        case .cgNone: return "none"
        case .props: return "props"
        case .soft: return "soft"
        case .full: return "full"
        case .strict: return "strict"
        case .default: return "default"
        }
    }

    static func lockMethod(_ m: Rpc_CriuNetworkLockMethod) -> String {
        switch m {
        case .iptables: return "iptables"
        case .nftables: return "nftables"
        case .skip: return "skip"
        }
    }
}
