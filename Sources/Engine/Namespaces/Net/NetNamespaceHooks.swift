import Glibc
import Logging

/// The dump's side: a tree that owns its network namespace (it is in one that is not cryo's,
/// and no process outside the tree is in it) gets that namespace locked while frozen, its
/// sockets read from inside it, and its contents written. A tree in a namespace shared with
/// others is left to the namespace checks (issue 12 §1), and its TCP sockets are refused.
public final class TreeNetNamespace {
    static let log = Logger(label: "netns")
    public let nsFD: Int32
    public let id: UInt32
    let lock: NetworkLock?
    var released = false

    init(nsFD: Int32, id: UInt32, lock: NetworkLock?) { self.nsFD = nsFD; self.id = id; self.lock = lock }

    /// nil when the tree shares cryo's network namespace, or one with processes outside it.
    public static func prepare(root: Int32, pids: [Int32], proc: ProcReader, request: DumpRequest) throws -> TreeNetNamespace? {
        guard let rootNs = proc.namespaceInode(pid: root, "net") else { throw DumpError.unsupported(pid: root, what: "a network namespace that cannot be read") }
        let mine = try NetNs.current()
        let cryoNs = NetNs.inode(mine)
        close(mine)
        if rootNs == cryoNs { return nil }
        let tree = Set(pids)
        if let other = proc.allPids().first(where: { !tree.contains($0) && proc.namespaceInode(pid: $0, "net") == rootNs }) {
            log.info("network namespace net:[\(rootNs)] of the tree is shared with pid \(other) outside it: its contents are not dumped")
            return nil
        }
        for p in pids where proc.namespaceInode(pid: p, "net") != rootNs {
            throw DumpError.unsupported(pid: p, what: "a network namespace other than the root's net:[\(rootNs)]")
        }
        let externals = try VethExternals(parsing: request.external)
        _ = externals
        let fd = try NetNs.of(pid: root)
        guard NetNs.inode(fd) == rootNs else { close(fd); throw DumpError.unsupported(pid: root, what: "a network namespace that changed while frozen") }
        let name = "cryo-\(root)"
        do {
            let foreign = try NetworkLock.foreignTables(nsFD: fd, ours: nil)
            if !foreign.isEmpty {
                throw NetNamespaceError.unsupported(ns: rootNs, what: "nftables rules (\(foreign.joined(separator: ", "))), which cryo cannot dump yet")
            }
            let lock = try NetworkLock.lock(nsFD: fd, method: request.networkLock, name: name)
            // CRIU numbers namespaces itself; the inode is unique while the tree holds it.
            return TreeNetNamespace(nsFD: fd, id: UInt32(truncatingIfNeeded: rootNs), lock: lock)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Runs `body` with this thread inside the tree's namespace (when there is one): socket
    /// diagnostics and repair then see the tree's sockets.
    public static func within<T>(_ n: TreeNetNamespace?, _ body: () throws -> T) throws -> T {
        guard let n else { return try body() }
        return try NetNs.within(n.nsFD, body)
    }

    public func dump(images: ImageDirectory, request: DumpRequest) throws {
        try NetNamespaceImages.dump(nsFD: nsFD, id: id, images: images, externals: VethExternals(parsing: request.external))
    }

    /// Ends the dump's hold: `unlock` after a failed dump or one that leaves the tree alive;
    /// a killed tree's namespace stays locked and goes with it.
    public func release(unlock: Bool) {
        guard !released else { return }
        released = true
        if unlock, let lock {
            do { try lock.unlock() } catch { Self.log.error("\(error)") }
        }
        close(nsFD)
    }
}

/// The restore's side: a new network namespace for a tree whose images hold one, entered by
/// the calling thread so that the tasks it creates and the sockets it makes are in it.
public final class RestoredNetNamespace {
    static let log = Logger(label: "netns")
    public let nsFD: Int32
    let outsideFD: Int32
    var lock: NetworkLock?
    var left = false

    init(nsFD: Int32, outsideFD: Int32) { self.nsFD = nsFD; self.outsideFD = outsideFD }

    /// nil when the images hold no network namespace (the tree shared cryo's).
    public static func begin(images: ImageDirectory, ids: Img_TaskKobjIdsEntry, request: RestoreRequest) throws -> RestoredNetNamespace? {
        guard ids.hasNetNsID, images.exists(.netdev, Int(ids.netNsID)) else { return nil }
        let externals = try VethExternals(parsing: request.external)
        let outside = try NetNs.current()
        guard NetNs.unshare(NetNs.cloneNewNet) == 0 else {
            let e = errno
            close(outside)
            throw SystemCallError(call: "unshare(CLONE_NEWNET)", errno: e, context: "a network namespace for the tree")
        }
        let ns: Int32
        do { ns = try NetNs.current() } catch {
            if NetNs.setns(outside, NetNs.cloneNewNet) != 0 { log.error("cannot return to cryo's network namespace: errno \(errno)") }
            close(outside)
            throw error
        }
        let n = RestoredNetNamespace(nsFD: ns, outsideFD: outside)
        do {
            // Locked before any link is up: nothing answers for sockets not yet rebuilt.
            n.lock = try NetworkLock.lock(nsFD: ns, method: request.networkLock, name: "cryo-restore")
            try NetNamespaceImages.restore(nsFD: ns, outsideFD: outside, id: ids.netNsID, images: images, externals: externals)
        } catch {
            n.abort()
            throw error
        }
        return n
    }

    /// The tree runs: lift the lock and take this thread back to cryo's namespace.
    public func finish() throws {
        defer { abort() }
        try lock?.unlock()
    }

    /// Leaves the namespace to its tasks (it goes when they do, with its veth peers).
    public func abort() {
        guard !left else { return }
        left = true
        let rc = NetNs.setns(outsideFD, NetNs.cloneNewNet)
        precondition(rc == 0, "cryo could not return to its network namespace: errno \(errno)")
        close(nsFD)
        close(outsideFD)
    }
}
