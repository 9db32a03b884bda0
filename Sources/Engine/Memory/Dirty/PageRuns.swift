/// Set operations on sorted lists of disjoint page runs, which is how tracking reports ranges.
public enum PageRuns {
    /// Sorts and joins overlapping or touching runs.
    public static func normalize(_ runs: [PageRun]) -> [PageRun] {
        var out: [PageRun] = []
        for r in runs.filter({ $0.end > $0.start }).sorted(by: { $0.start < $1.start }) {
            if let last = out.last, r.start <= last.end { out[out.count - 1].end = max(last.end, r.end) } else { out.append(r) }
        }
        return out
    }

    /// a ∩ b; both sorted and disjoint.
    public static func intersect(_ a: [PageRun], _ b: [PageRun]) -> [PageRun] {
        var out: [PageRun] = []
        var i = 0, j = 0
        while i < a.count && j < b.count {
            let s = max(a[i].start, b[j].start), e = min(a[i].end, b[j].end)
            if s < e { out.append(PageRun(start: s, end: e)) }
            if a[i].end < b[j].end { i += 1 } else { j += 1 }
        }
        return out
    }

    /// a − b; both sorted and disjoint.
    public static func subtract(_ a: [PageRun], _ b: [PageRun]) -> [PageRun] {
        var out: [PageRun] = []
        var j = 0
        for r in a {
            var cur = r.start
            while j < b.count && b[j].end <= cur { j += 1 }
            var k = j
            while k < b.count && b[k].start < r.end {
                if b[k].start > cur { out.append(PageRun(start: cur, end: b[k].start)) }
                cur = max(cur, b[k].end)
                k += 1
            }
            if cur < r.end { out.append(PageRun(start: cur, end: r.end)) }
        }
        return out
    }

    /// Splits each run of `runs` into pieces inside `marked` (true) and outside it (false), in order.
    public static func split(_ runs: [PageRun], by marked: [PageRun]) -> [(run: PageRun, marked: Bool)] {
        var out: [(run: PageRun, marked: Bool)] = []
        var j = 0
        for r in runs {
            var cur = r.start
            while j < marked.count && marked[j].end <= cur { j += 1 }
            var k = j
            while k < marked.count && marked[k].start < r.end && cur < r.end {
                if marked[k].start > cur { out.append((PageRun(start: cur, end: marked[k].start), false)); cur = marked[k].start }
                let e = min(r.end, marked[k].end)
                out.append((PageRun(start: cur, end: e), true))
                cur = e
                k += 1
            }
            if cur < r.end { out.append((PageRun(start: cur, end: r.end), false)) }
        }
        return out
    }

    /// The parts of sorted `runs` outside and inside sorted `marked`.
    public static func partition(_ runs: [PageRun], by marked: [PageRun]) -> (outside: [PageRun], inside: [PageRun]) {
        let parts = split(runs, by: marked)
        return (parts.filter { !$0.marked }.map(\.run), parts.filter(\.marked).map(\.run))
    }
}
