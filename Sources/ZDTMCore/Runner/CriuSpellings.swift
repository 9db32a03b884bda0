/// CRIU's zdtm.py spells modes as flags (`--pre 2 --page-server`, `--snaps`, `--lazy-pages`,
/// `-f h,ns`); zdtm takes those too, so CRIU users' habits work. This maps them onto our
/// modes: a transfer flag picks its mode, `--pre`/`--snaps`/`--dedup` pick the incremental
/// mode, or, together with a transfer flag, ask that mode to take pre-dumps or snapshots first.
public struct CriuSpellings: Sendable, Equatable {
    public var pre: Int?
    public var snaps = false
    public var dedup = false
    public var pageServer = false
    public var lazyPages = false
    public var remoteLazyPages = false
    public var remote = false
    public var stream = false
    public init() {}

    public enum Problem: Error, CustomStringConvertible, Equatable {
        case conflict(String)
        public var description: String { switch self { case .conflict(let s): return s } }
    }

    /// Modes that move images somewhere (and so can take --pre/--snaps steps themselves).
    static let transferModes: Set<String> = ["page-server", "lazy", "remote-lazy", "remote", "stream"]

    /// The incremental steps a transfer mode should take before its final dump: "pre", "snaps" or nil.
    public var incremental: String? { snaps ? "snaps" : (pre != nil || dedup) ? "pre" : nil }

    /// Modes named by the flags, added to `explicit` (--mode); empty when no flag names one.
    public func modes(explicit: [String]) throws -> [String] {
        let transfer = [(pageServer, "page-server"), (lazyPages, "lazy"), (remoteLazyPages, "remote-lazy"),
                        (remote, "remote"), (stream, "stream")].filter(\.0).map(\.1)
        if transfer.count > 1 {
            throw Problem.conflict("--\(transfer.joined(separator: " and --")) exclude each other (one transfer mode per run)")
        }
        if snaps && dedup { throw Problem.conflict("--snaps and --dedup exclude each other") }
        var out = explicit
        // --mode lazy --snaps: the transfer mode takes snapshots first; no separate snaps mode.
        let explicitTransfer = explicit.contains { CriuSpellings.transferModes.contains($0) }
        if let t = transfer.first {
            out.append(t)
        } else if explicitTransfer {
        } else if dedup {
            out.append("dedup")
        } else if snaps {
            out.append("snaps")
        } else if pre != nil && explicit.isEmpty {
            out.append("pre")
        }
        var seen: Set<String> = []
        return out.filter { seen.insert($0).inserted }
    }

    /// `-f h,ns -f uns` -> ["h", "ns", "uns"].
    public static func flavours(_ given: [String]) -> [String] {
        given.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
    }
}
