import Engine
import Foundation
import Glibc

/// Post-copy across a (virtual) network, as a migration does it: dump, make the restore side's
/// copy without the pages a lazy restore serves (`cryo image make-lazy`), serve the dump's
/// pages with `cryo page-server --lazy-pages` in a network namespace of its own, and restore the
/// copy with --lazy-pages while `cryo lazy-pages --page-server`, in a second namespace joined to
/// the first by a veth pair, fetches every page from the server. Both namespaces and the veth
/// exist only for the case. Every daemon is ended by pid and reaped, failed or not. With --pre N
/// or --snaps the final dump comes after N pre-dumps or snapshots; the server resolves the chain.
public struct RemoteLazyMode: CRMode {
    public let name = "remote-lazy"
    public let summary = "dump, make-lazy, restore --lazy-pages with cryo lazy-pages fetching from cryo page-server --lazy-pages over a veth between two netns"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let images = try IncrementalSteps.dump(ctx, mode: name)
        try PlainMode.waitGone(ctx.dumpedTree)
        // The restore side holds no page a lazy restore can fetch: each crosses the veth.
        let restoreSide = ctx.dir + "/img-\(ctx.iteration)-restore"
        try ctx.cryo(["image", "make-lazy", images, restoreSide], log: "make-lazy-\(ctx.iteration)")
        let net = try NetnsPair(tag: "\(getpid())-lz-\(ctx.workload.name)-\(ctx.iteration)")
        defer { net.remove() }
        let server = try PageServerProcess(ctx: ctx, net: net, images: images, label: "lazy", prev: nil, lazy: true)
        defer { server.stop() }
        try LazyMode.restoreLazily(ctx, images: restoreSide, daemon: [
            "/usr/bin/nsenter", "--net=/run/netns/" + net.client, ctx.cryo, "lazy-pages", "--page-server",
            "--address", PageServerMode.serverAddress, "--port", String(server.port), "-D", restoreSide,
        ])
        // The lazy-pages client ends its session with CLOSE: the server exits by itself.
        try server.waitDone()
    }
}
