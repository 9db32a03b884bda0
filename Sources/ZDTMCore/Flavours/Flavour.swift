import Foundation

public enum FlavourError: Error, CustomStringConvertible, Equatable {
    case unknown(name: String, available: [String], planned: [String])
    public var description: String {
        switch self {
        case .unknown(let n, let a, let p):
            let later = p.isEmpty ? "" : "; planned, not implemented yet: \(p.joined(separator: ", "))"
            return "no flavour '\(n)' (available: \(a.joined(separator: ", "))\(later))"
        }
    }
}

/// Where a workload runs: host namespaces, or new ones. Adding a flavour is adding a type in
/// its own file and listing it in `Flavours.all`.
public protocol Flavour: Sendable {
    var name: String { get }
    var summary: String { get }
    /// Starts the workload's starter process (which daemonizes) in `dir`, stdout/stderr to
    /// `log`, and returns the starter's pid. The daemon it leaves behind re-parents to zdtm.
    func start(binary: String, args: [String], dir: String, log: String) throws -> Int32
}

public enum Flavours {
    public static let all: [any Flavour] = [HostFlavour(), NsFlavour(), UnsFlavour()]
    /// Named in the design and accepted in suite files, but not runnable yet.
    public static let planned: [String] = []
    public static var known: Set<String> { Set(all.map(\.name) + planned) }

    public static func named(_ name: String) throws -> any Flavour {
        guard let f = all.first(where: { $0.name == name }) else {
            throw FlavourError.unknown(name: name, available: all.map(\.name), planned: planned)
        }
        return f
    }
}
