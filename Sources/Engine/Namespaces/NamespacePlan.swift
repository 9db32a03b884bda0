import Foundation

/// The namespaces a restore makes: those where the images' root task was not in the dumper's
/// own (CRIU's root_ns_mask, from inventory root_ids against the root's ids). Every task of
/// the tree must be in its root's; external ones are refused until they can be joined.
struct NamespacePlan {
    var kinds: [NamespaceKind] = []
    var ids: Img_TaskKobjIdsEntry = Img_TaskKobjIdsEntry()

    /// Flags for the root's clone3: the namespaces it is born in (not those cryo's thread
    /// made and entered first: the root inherits them).
    /// Time is made by the intermediate that clones the root (`timeOffsets`), not by the flag;
    /// cgroup by the root itself once in its namespace's root cgroups (CgroupNamespace.build).
    func cloneFlags(entered: NamespaceHolds) -> UInt64 { kinds.filter { !entered.has($0) && $0 != .time && $0 != .cgroup }.reduce(0) { $0 | $1.cloneFlag } }
    var newPid: Bool { kinds.contains(.pid) }
    /// A new user namespace owns the tree's other new ones: they are born with the root,
    /// in its clone, and net is entered by joining the root's (`rootCreated`).
    var newUser: Bool { kinds.contains(.user) }
    /// The root's time namespace offsets, when it had one of its own.
    var timeOffsets: TimeOffsets?
    var externals = Externals()

    static func load(images: ImageDirectory, tasks: [(pid: Int32, ids: Img_TaskKobjIdsEntry, zombie: Bool)], externals: Externals) throws -> NamespacePlan {
        guard let root = tasks.first else { return NamespacePlan() }
        let inv = try images.readOne(.inventory, as: Img_InventoryEntry.self)
        var plan = NamespacePlan()
        plan.ids = root.ids
        plan.externals = externals
        if let (k, byInode) = externals.namespaces.keys.first, let key = byInode.first?.value {
            throw NamespaceError.restore(kind: k.procName, reason: "--external \(k.procName)[...]:\(key) names a namespace to leave out of a dump; joining one at restore (CRIU's --inherit-fd) is not done")
        }
        guard inv.hasRootIds else { return plan }
        plan.kinds = root.ids.newNamespaces(comparedTo: inv.rootIds)
        for t in tasks where !t.zombie {
            for k in NamespaceKind.allCases {
                guard let mine = t.ids.namespaceID(k), let want = root.ids.namespaceID(k), mine != want else { continue }
                throw NamespaceError.restore(kind: k.procName, reason: "pid \(t.pid) is in another namespace (id \(mine)) than the tree's root (id \(want))")
            }
        }
        for k in plan.kinds {
            guard let contents = NamespaceContentsKinds.of(k) else {
                throw NamespaceError.restore(kind: k.procName, reason: "the tree's root \(root.pid) was dumped in a \(k.procName) namespace of its own (id \(root.ids.namespaceID(k) ?? 0)), which cryo cannot restore yet")
            }
            try contents.check(id: root.ids.namespaceID(k)!, images: images, externals: externals)
        }
        if plan.kinds.contains(.time) { plan.timeOffsets = try TimeNamespace.offsets(id: root.ids.namespaceID(.time)!, images: images) }
        return plan
    }

    /// Before the root exists: the namespaces cryo's thread makes and enters itself (net).
    /// On a failure halfway, what was entered is left again.
    func enter(images: ImageDirectory, request: RestoreRequest) throws -> NamespaceHolds {
        let holds = NamespaceHolds()
        do {
            for k in kinds where !(newUser && k == .net) {
                guard let h = try NamespaceContentsKinds.of(k)!.enter(id: ids.namespaceID(k)!, images: images, request: request) else { continue }
                holds.holds.append((k, h))
            }
        } catch {
            try? holds.release(treeRuns: false)
            throw error
        }
        return holds
    }

    /// The root exists, stopped in cryo's code: its user namespace gets its maps before
    /// anything runs in it, then cryo's thread joins its network namespace (owned by it).
    func rootCreated(pid: Int32, images: ImageDirectory, request: RestoreRequest, holds: NamespaceHolds) throws {
        guard newUser else { return }
        try UserNamespace.writeMaps(id: ids.namespaceID(.user)!, pid: pid, images: images)
        if kinds.contains(.net) {
            holds.holds.append((.net, try RestoredNetNamespace.begin(id: ids.namespaceID(.net)!, images: images, request: request,
                                                                     externals: try Externals(parsing: request.external).veth, joining: pid)))
        }
    }

    /// Right after the root exists: the kinds built before the tasks (a mount tree of the
    /// tree's own). The path through which cryo reaches the tree's files, or nil (its own).
    func build(root: RestoreTarget, images: ImageDirectory, request: RestoreRequest) throws -> String? {
        var prefix: String?
        for k in kinds {
            if let p = try NamespaceContentsKinds.of(k)!.build(id: ids.namespaceID(k)!, root: root, images: images, request: request) { prefix = p }
        }
        return prefix
    }

    /// The tree's files are not where cryo sees them: a mount tree of its own is rebuilt.
    func ownMountTree(images: ImageDirectory) throws -> Bool {
        guard kinds.contains(.mnt), let id = ids.namespaceID(.mnt) else { return false }
        return try MountNamespace.isOwnTree(id: id, images: images)
    }

    /// Fills every new namespace, through the root (host pid), before the tree's own state.
    func restoreContents(root: RestoreTarget, images: ImageDirectory) throws {
        for k in kinds { try NamespaceContentsKinds.of(k)!.restore(id: ids.namespaceID(k)!, root: root, images: images) }
    }
}
