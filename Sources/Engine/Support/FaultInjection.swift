import Foundation

/// Where `cryo` can be told to fail on purpose (CRYO_FAULT=N or a name, as CRIU's CRIU_FAULT),
/// to prove what a failure leaves: after a failed dump the tree runs on unharmed, after a
/// failed restore no process of the tree is left.
public enum FaultPoint: Int, CaseIterable, Sendable {
    /// dump, pre-dump: the tree is frozen, nothing written yet.
    case afterFreeze = 1
    /// dump, pre-dump: some pages written, more to come.
    case midPages = 2
    /// dump: the first fd of the tree dumped, the rest not.
    case files = 3
    /// restore: the root rebuilt (and its children created), the rest not.
    case restoreTasks = 4
    /// dump, pre-dump through a page server: some page bytes sent.
    case midTransfer = 5
    /// dump: every fd dumped and the pty queues read, the images not finished.
    case afterFiles = 6

    public var name: String {
        switch self {
        case .afterFreeze: return "after-freeze"
        case .midPages: return "mid-pages"
        case .files: return "files"
        case .restoreTasks: return "restore-tasks"
        case .midTransfer: return "mid-transfer"
        case .afterFiles: return "after-files"
        }
    }

    /// Whether the point lies in `cryo restore` (else in dump or pre-dump).
    public var isRestore: Bool { self == .restoreTasks }

    public static func parse(_ s: String) -> FaultPoint? {
        if let n = Int(s) { return FaultPoint(rawValue: n) }
        return allCases.first { $0.name == s }
    }
}

public struct InjectedFault: Error, CustomStringConvertible {
    public let point: FaultPoint
    public var description: String { "fault injected at \(point.name) (CRYO_FAULT=\(point.rawValue))" }
}

public enum Fault {
    public static let variable = "CRYO_FAULT"
    /// The points this process was asked to fail at; read once, never changed.
    public static let armed: Set<FaultPoint> = Set(
        (ProcessInfo.processInfo.environment[variable] ?? "").split(separator: ",").compactMap { FaultPoint.parse(String($0)) })

    public static func check(_ point: FaultPoint) throws {
        if armed.contains(point) { throw InjectedFault(point: point) }
    }
}
