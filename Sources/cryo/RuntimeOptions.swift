import ArgumentParser
import Engine

/// CRIU's options that container runtimes pass (over RPC or on a command line) and that cryo
/// honours. Those it cannot honour yet are not declared, so a runtime asking for them gets a
/// refusal naming the option instead of a checkpoint that lacks it.
struct RuntimeDumpOptions: ParsableArguments {
    @Option(name: .customLong("freeze-cgroup"), help: "The tree's freezer cgroup: every task in it must be in the tree (cryo freezes with ptrace).") var freezeCgroup: String?
    @Option(name: .customLong("empty-ns"), help: "A namespace the caller sets up itself (net): its contents are not dumped (restore with --empty-ns net makes it with lo up).") var emptyNs: [String] = []
    @Flag(name: .customLong("tcp-established"), help: "Allow established TCP connections (cryo always dumps them, in repair mode).") var tcpEstablished = false
    @Flag(name: .customLong("orphan-pts-master"), help: "Accepted: cryo dumps no ptys (it refuses them), so no master is ever orphaned.") var orphanPtsMaster = false
    @Flag(name: .customLong("file-locks"), help: "Dump the file locks the tree holds (flock, POSIX, OFD, leases); without it a held lock refuses the dump.") var fileLocks = false
    @Option(name: .customLong("ext-unix-sk"), help: ArgumentHelp("Alone: a datagram socket connected to a named socket outside the tree is dumped as external, and reconnected at restore. =INO[,INO]: the tree's socket INO, of any type, is external: restore takes its stand-in from --inherit-fd fd[N]:socket:[INO] (docs/EXT-UNIX.md).", valueName: "INO")) var extUnixSk: [String] = []

    func validate() throws {
        for ns in emptyNs where ns != "net" { throw ValidationError("--empty-ns \(ns): only net") }
        do { _ = try ExtUnixSk(parsing: extUnixSk) } catch { throw ValidationError("\(error)") }
    }

    var emptyNamespaces: Int32 { emptyNs.contains("net") ? Int32(CloneFlag.newnet) : 0 }

    func apply(to req: inout DumpRequest) {
        req.freezeCgroup = freezeCgroup
        req.fileLocks = fileLocks
        req.emptyNamespaces |= emptyNamespaces
        req.extUnixSk = (try? ExtUnixSk(parsing: extUnixSk)) ?? ExtUnixSk()
    }
}

struct RuntimeRestoreOptions: ParsableArguments {
    @Flag(name: .customLong("restore-sibling"), help: "Make the root a child of cryo's parent (the runtime), not of cryo.") var sibling = false
    @Flag(name: .customLong("tcp-established"), help: "Restore established TCP connections (cryo always does).") var tcpEstablished = false
    @Flag(name: .customLong("orphan-pts-master"), help: "Accepted: images of cryo hold no ptys.") var orphanPtsMaster = false
    @Flag(name: .customLong("file-locks"), help: "Accepted: cryo always sets the locks its images hold again (CRIU without it drops them).") var fileLocks = false
    @Flag(name: .customLong("evasive-devices"), help: "Accepted: cryo opens device files by their dumped path only (stricter).") var evasiveDevices = false
    @Option(name: .customLong("ext-unix-sk"), help: ArgumentHelp("Reconnect the tree's datagram sockets dumped as connected to a named socket outside it (CRIU's meaning; =INO is taken and changes nothing here).", valueName: "INO")) var extUnixSk: [String] = []
    @Option(name: .customLong("inherit-fd"), help: ArgumentHelp("fd[N]:pipe:[INODE] or fd[N]:socket:[INODE]: the tree's pipe or unix socket that a process outside it shared is cryo's fd N (as CRIU).", valueName: "fd[N]:KEY"))
    var inheritFd: [String] = []
    @Option(name: .customLong("root"), help: "The filesystem a tree that pivoted into a root of its own (a container) comes back on.") var root: String?
    @Option(name: .customLong("empty-ns"), help: "A namespace the caller sets up itself (net): made empty, with lo up.") var emptyNs: [String] = []
    @Option(name: .customLong("cgroup-root"), help: "[CONTROLLER:]PATH: taken when the tree's dumped cgroups are at or below PATH (cryo moves no tree to another root).") var cgroupRoot: [String] = []

    func validate() throws {
        do { _ = try InheritedFds(parsing: inheritFd) } catch { throw ValidationError("\(error)") }
        do { _ = try ExtUnixSk(parsing: extUnixSk) } catch { throw ValidationError("\(error)") }
        for ns in emptyNs where ns != "net" { throw ValidationError("--empty-ns \(ns): only net") }
    }

    func apply(to req: inout RestoreRequest) throws {
        req.sibling = sibling
        req.inheritedFds = try InheritedFds(parsing: inheritFd)
        req.extUnixSk = !extUnixSk.isEmpty
        req.root = root
        req.cgroupRoots = cgroupRoot
        req.emptyNamespaces = emptyNs.contains("net") ? Int32(CloneFlag.newnet) : 0
    }
}
