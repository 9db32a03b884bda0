import Foundation

public enum FlavourError: Error, CustomStringConvertible {
    case unknown(name: String, known: [String])
    public var description: String {
        switch self {
        case .unknown(let n, let k): return "no flavour '\(n)' (known: \(k.joined(separator: ", ")))"
        }
    }
}

/// Where a workload runs: host namespaces, or new ones. Adding a flavour is adding a type and
/// listing it in `Flavours.all`.
public protocol Flavour: Sendable {
    var name: String { get }
    var summary: String { get }
    /// Starts the workload's starter process (which daemonizes) and returns its pid.
    func start(binary: String, args: [String], dir: String, log: String) throws -> Int32
}

public enum Flavours {
    public static let all: [any Flavour] = [HostFlavour()]

    public static func named(_ name: String) throws -> any Flavour {
        guard let f = all.first(where: { $0.name == name }) else { throw FlavourError.unknown(name: name, known: all.map(\.name)) }
        return f
    }
}

/// h: the host's namespaces.
public struct HostFlavour: Flavour {
    public let name = "h"
    public let summary = "host namespaces"
    public init() {}
    public func start(binary: String, args: [String], dir: String, log: String) throws -> Int32 {
        try Subprocess.spawn(binary, args, cwd: dir, output: log)
    }
}
