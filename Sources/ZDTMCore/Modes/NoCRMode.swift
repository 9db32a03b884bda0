/// No checkpoint at all: proves the workload and the harness before cryo is involved.
public struct NoCRMode: CRMode {
    public let name = "nocr"
    public let summary = "record state, check; no checkpoint in between"
    public init() {}
    public func checkpointRestore(_ ctx: CaseContext) throws {}
}
