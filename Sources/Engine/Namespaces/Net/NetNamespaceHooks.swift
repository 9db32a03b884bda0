import Glibc
import Logging

/// The dump's hold on a tree's own network namespace (one no process outside the tree is in;
/// NamespaceSet decides): locked while frozen, and the sockets read from inside it.
final class TreeNetNamespace: NamespaceHold {
    static let log = Logger(label: "netns")
    let nsFD: Int32
    let lock: NetworkLock?
    var released = false

    init(nsFD: Int32, lock: NetworkLock?) { self.nsFD = nsFD; self.lock = lock }

    static func prepare(root: Int32, request: DumpRequest) throws -> TreeNetNamespace {
        let fd = try NetNs.of(pid: root)
        do {
            let foreign = try NetworkLock.foreignTables(nsFD: fd, ours: nil)
            if !foreign.isEmpty {
                throw NetNamespaceError.unsupported(ns: NetNs.inode(fd), what: "nftables rules (\(foreign.joined(separator: ", "))), which cryo cannot dump yet")
            }
            return TreeNetNamespace(nsFD: fd, lock: try NetworkLock.lock(nsFD: fd, method: request.networkLock, name: "cryo-\(root)"))
        } catch {
            close(fd)
            throw error
        }
    }

    /// Socket diagnostics and repair see the tree's sockets from inside.
    func within<T>(_ body: () throws -> T) throws -> T { try NetNs.within(nsFD, body) }

    /// A killed tree's namespace stays locked and goes with it.
    func release(treeRuns: Bool) throws {
        guard !released else { return }
        released = true
        defer { close(nsFD) }
        if treeRuns, let lock { try lock.unlock() }
    }
}

/// The restore's side: a new network namespace for a tree whose images hold one, entered by
/// the calling thread so that the tasks it creates and the sockets it makes are in it.
final class RestoredNetNamespace: NamespaceHold {
    static let log = Logger(label: "netns")
    let nsFD: Int32
    let outsideFD: Int32
    var lock: NetworkLock?
    var left = false

    init(nsFD: Int32, outsideFD: Int32) { self.nsFD = nsFD; self.outsideFD = outsideFD }

    /// `joining`: a task born in the namespace already (one a new user namespace owns).
    static func begin(id: UInt32, images: ImageDirectory, request: RestoreRequest, externals: VethExternals, joining: Int32? = nil) throws -> RestoredNetNamespace {
        let outside = try NetNs.current()
        if let pid = joining {
            let fd = try NetNs.of(pid: pid)
            let rc = NetNs.setns(fd, NetNs.cloneNewNet)
            let e = errno
            close(fd)
            guard rc == 0 else {
                close(outside)
                throw SystemCallError(call: "setns(CLONE_NEWNET)", errno: e, context: "the network namespace of the tree's root \(pid)")
            }
        } else if NetNs.unshare(NetNs.cloneNewNet) != 0 {
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
            if images.exists(.netdev, Int(id)) {
                try NetNamespaceImages.restore(nsFD: ns, outsideFD: outside, id: id, images: images, externals: externals)
            } else if request.emptyNamespaces & Int32(CloneFlag.newnet) != 0 {
                try NetNamespaceImages.restoreEmpty(nsFD: ns)
            } else {
                throw NamespaceError.restore(kind: "net", reason: "no \(ImageKind.netdev.fileName(Int(id))): the namespace was dumped with --empty-ns net (restore it with --empty-ns net) or as external")
            }
        } catch {
            n.leave()
            throw error
        }
        return n
    }

    /// This thread is inside already, until release.
    func within<T>(_ body: () throws -> T) throws -> T { try body() }

    /// The tree runs: lift the lock. Either way this thread goes back to cryo's namespace and
    /// leaves the new one to its tasks (it goes when they do, with its veth peers).
    func release(treeRuns: Bool) throws {
        defer { leave() }
        if treeRuns { try lock?.unlock() }
    }

    func leave() {
        guard !left else { return }
        left = true
        let rc = NetNs.setns(outsideFD, NetNs.cloneNewNet)
        precondition(rc == 0, "cryo could not return to its network namespace: errno \(errno)")
        close(nsFD)
        close(outsideFD)
    }
}
