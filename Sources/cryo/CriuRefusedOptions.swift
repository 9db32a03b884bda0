import ArgumentParser

/// CRIU options cryo does not take, each refused with the reason (what cryo does instead), so
/// that a script written for CRIU, or a runtime over RPC, learns why rather than meeting an
/// unknown option. Shared by dump, pre-dump and restore.
struct CriuRefusedOptions: ParsableArguments {
    @Flag(name: .customLong("auto-dedup"), help: .hidden) var autoDedup = false
    @Flag(name: .customLong("link-remap"), help: .hidden) var linkRemap = false
    @Option(name: .customLong("ghost-limit"), help: .hidden) var ghostLimit: String?
    @Option(name: .customLong("cpu-cap"), help: .hidden) var cpuCap: String?
    @Flag(name: .customLong("force-irmap"), help: .hidden) var forceIrmap = false
    @Option(name: .customLong("irmap-scan-path"), help: .hidden) var irmapScanPath: [String] = []
    @Option(name: .customLong("exec-cmd"), parsing: .remaining, help: .hidden) var execCmd: [String] = []
    @Option(name: .customLong("timeout"), help: .hidden) var timeout: String?
    @Flag(name: .customLong("skip-in-flight"), help: .hidden) var skipInFlight = false
    @Flag(name: .customLong("tcp-close"), help: .hidden) var tcpClose = false
    @Flag(name: .customLong("weak-sysctls"), help: .hidden) var weakSysctls = false
    @Option(name: .customLong("lsm-profile"), help: .hidden) var lsmProfile: String?
    @Option(name: .customLong("lsm-mount-context"), help: .hidden) var lsmMountContext: String?
    @Flag(name: .customLong("tls"), help: .hidden) var tls = false
    @Option(name: .customLong("cgroup-props"), help: .hidden) var cgroupProps: String?
    @Option(name: .customLong("cgroup-props-file"), help: .hidden) var cgroupPropsFile: String?
    @Option(name: .customLong("cgroup-dump-controller"), help: .hidden) var cgroupDumpController: [String] = []
    @Option(name: .customLong("cgroup-yard"), help: .hidden) var cgroupYard: String?
    @Option(name: .customLong("ext-mount-map"), help: .hidden) var extMountMap: [String] = []
    @Flag(name: .customLong("enable-external-sharing"), help: .hidden) var extSharing = false
    @Flag(name: .customLong("enable-external-masters"), help: .hidden) var extMasters = false
    @Option(name: .customLong("skip-mnt"), help: .hidden) var skipMnt: [String] = []
    @Option(name: .customLong("enable-fs"), help: .hidden) var enableFs: [String] = []
    @Flag(name: .customLong("mntns-compat-mode"), help: .hidden) var mntnsCompat = false
    @Option(name: .customLong("join-ns"), help: .hidden) var joinNs: [String] = []
    @Option(name: .customLong("veth-pair"), help: .hidden) var vethPair: [String] = []
    @Option(name: .customLong("pidfd-store-sk"), help: .hidden) var pidfdStoreSk: String?
    @Flag(name: .customLong("unprivileged"), help: .hidden) var unprivileged = false
    @Flag(name: .customLong("display-stats"), help: .hidden) var displayStats = false
    @Flag(name: .customLong("skip-file-rwx-check"), help: .hidden) var skipFileRwxCheck = false

    /// Each CRIU option given, with why cryo refuses it.
    var refusals: [(option: String, reason: String)] {
        let mounts = "cryo rebuilds a mount tree from its mounts, their --external mnt[...] names and --root (docs/NAMESPACES.md); it takes no other mount options"
        let cgroups = "cryo puts the tree back in its dumped cgroup paths (--manage-cgroups); it takes no other root, properties or controllers"
        let all: [(Bool, String, String)] = [
            (autoDedup, "--auto-dedup", "run `cryo dedup -D DIR` after the snapshot instead"),
            (linkRemap, "--link-remap", "cryo always copies a deleted file's contents into the images (a ghost file, up to 256 MiB); it never links files on the dumped filesystem"),
            (ghostLimit != nil, "--ghost-limit", "cryo's ghost file limit is fixed at 256 MiB; a larger deleted file is refused at dump, by name"),
            (cpuCap != nil, "--cpu-cap", "cryo compares no CPU capabilities: the FPU state must fit this CPU's xsave layout, or restore fails naming the task"),
            (forceIrmap || !irmapScanPath.isEmpty, "--force-irmap/--irmap-scan-path", "cryo finds inotify watch paths through file handles, without CRIU's irmap"),
            (!execCmd.isEmpty, "--exec-cmd", "restore with -d (--restore-detached) and run the command after it"),
            (timeout != nil, "--timeout", "cryo's freeze takes no time limit"),
            (skipInFlight, "--skip-in-flight", "cryo dumps established TCP connections and refuses, by fd, the states it cannot carry; it drops none"),
            (tcpClose, "--tcp-close", "TCP connections come back established, or the dump refuses them; none is restored closed"),
            (weakSysctls, "--weak-sysctls", "a sysctl of the tree's network namespace that cannot be set fails the restore, by name"),
            (lsmProfile != nil || lsmMountContext != nil, "--lsm-profile/--lsm-mount-context", "cryo does not restore LSM (AppArmor, SELinux) labels"),
            (tls, "--tls", "cryo's page server, image proxy and cache speak plain TCP on loopback by default; tunnel them (ssh, stunnel) across machines"),
            (cgroupProps != nil || cgroupPropsFile != nil || !cgroupDumpController.isEmpty || cgroupYard != nil,
             "--cgroup-props/--cgroup-props-file/--cgroup-dump-controller/--cgroup-yard", cgroups),
            (!extMountMap.isEmpty || extSharing || extMasters || !skipMnt.isEmpty || !enableFs.isEmpty || mntnsCompat,
             "--ext-mount-map/--enable-external-sharing/--enable-external-masters/--skip-mnt/--enable-fs/--mntns-compat-mode", mounts),
            (!joinNs.isEmpty, "--join-ns", "cryo restores the tree's own namespaces or refuses them at dump; it joins none"),
            (!vethPair.isEmpty, "--veth-pair", "name the veth with --external veth[IF]:OUTSIDE[@BRIDGE] (docs/NETNS.md)"),
            (pidfdStoreSk != nil, "--pidfd-store-sk", "cryo's tracking keeper (cryo track) holds what outlives a pre-dump; there is no pidfd store"),
            (unprivileged, "--unprivileged", "cryo runs as root only"),
            (displayStats, "--display-stats", "cryo writes no stats-dump image; `dump -v2` logs the frozen time and the bytes written"),
            (skipFileRwxCheck, "--skip-file-rwx-check", "cryo reopens files with their dumped flags and fails, naming the file, where it cannot"),
        ]
        return all.filter(\.0).map { ($0.1, $0.2) }
    }

    func check() throws {
        if let r = refusals.first { throw ValidationError("\(r.option): not supported: \(r.reason)") }
    }
}
