/// The points of a dump or restore where CRIU runs action scripts and, for RPC callers that
/// asked for notify_scripts, sends a NOTIFY and waits for the reply (runc locks its network,
/// runs its hooks and records the restored pid there). Raw values are CRIU's script names.
public enum ActionScript: String, Sendable, CaseIterable {
    case preDump = "pre-dump"
    case postDump = "post-dump"
    case networkLock = "network-lock"
    case networkUnlock = "network-unlock"
    case preRestore = "pre-restore"
    case setupNamespaces = "setup-namespaces"
    case postSetupNamespaces = "post-setup-namespaces"
    case postRestore = "post-restore"
    case postResume = "post-resume"
    case orphanPtsMaster = "orphan-pts-master"
}

/// Called at each action point with the root pid; a throw fails the dump or restore there
/// (a dump resumes the tree, a restore kills what it made).
public typealias ActionHook = @Sendable (_ script: ActionScript, _ pid: Int32) throws -> Void

public enum ActionError: Error, CustomStringConvertible {
    case refused(script: String, reason: String)
    public var description: String {
        switch self {
        case .refused(let s, let r): return "the caller's \(s) callback failed: \(r)"
        }
    }
}
