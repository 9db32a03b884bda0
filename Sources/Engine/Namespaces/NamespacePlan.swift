import Foundation

/// The namespaces a restore makes: those where the images' root task was not in the dumper's
/// own (CRIU's root_ns_mask, from inventory root_ids against the root's ids). Every task of
/// the tree must be in its root's; external ones are refused until they can be joined.
struct NamespacePlan {
    var kinds: [NamespaceKind] = []
    var ids: Img_TaskKobjIdsEntry = Img_TaskKobjIdsEntry()

    /// Flags for the root's clone3: the namespaces it is born in.
    var cloneFlags: UInt64 { kinds.reduce(0) { $0 | $1.cloneFlag } }
    var newPid: Bool { kinds.contains(.pid) }

    static func load(images: ImageDirectory, tasks: [(pid: Int32, ids: Img_TaskKobjIdsEntry, zombie: Bool)]) throws -> NamespacePlan {
        guard let root = tasks.first else { return NamespacePlan() }
        let inv = try images.readOne(.inventory, as: Img_InventoryEntry.self)
        var plan = NamespacePlan()
        plan.ids = root.ids
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
            try contents.check(id: root.ids.namespaceID(k)!, images: images)
        }
        return plan
    }

    /// Fills every new namespace, through the root (host pid), before the tree's own state.
    func restoreContents(root: RestoreTarget, images: ImageDirectory) throws {
        for k in kinds { try NamespaceContentsKinds.of(k)!.restore(id: ids.namespaceID(k)!, root: root, images: images) }
    }
}
