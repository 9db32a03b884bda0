import ArgumentParser
import Engine

/// CRIU's `--manage-cgroups[=MODE]`, for dump and restore.
struct CgroupOptions: ParsableArguments {
    @Option(name: .customLong("manage-cgroups"),
            help: "What restore does with the tree's cgroups: \(CgroupMode.allCases.map(\.rawValue).joined(separator: ", ")) (alone: soft, CRIU's default too).")
    var manageCgroups: String?

    var mode: CgroupMode {
        get throws {
            guard let m = manageCgroups else { return .soft }
            guard let mode = CgroupMode(rawValue: m) else {
                throw ValidationError("--manage-cgroups \(m): not one of \(CgroupMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return mode
        }
    }

    /// A bare --manage-cgroups (CRIU's optional value) becomes --manage-cgroups=soft.
    static func normalize(_ args: [String]) -> [String] {
        var out: [String] = []
        for (i, a) in args.enumerated() {
            if a == "--manage-cgroups" && !(i + 1 < args.count && CgroupMode(rawValue: args[i + 1]) != nil) {
                out.append("--manage-cgroups=soft")
            } else {
                out.append(a)
            }
        }
        return out
    }
}

extension Cryo {
    static func main() {
        main(ExtUnixSk.normalize(CgroupOptions.normalize(Array(CommandLine.arguments.dropFirst()))))
    }
}
