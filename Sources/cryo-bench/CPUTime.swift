// CPU time (user + system) of the processes a scenario runs: on a machine shared with other
// builds the wall time is mostly the scheduler's, the CPU time is the work done.
import Engine
import Glibc

/// CPU seconds of this process's children that have ended and been waited for.
func childrenCPU() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &ru)
    return Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
}

/// CPU seconds a running process (its threads) has used so far.
func processCPU(_ pid: Int32) -> Double {
    guard let s = try? ProcReader().stat(pid: pid) else { return 0 }
    return Double(s.utime + s.stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The CPU seconds `body`'s children (and the given daemons) used, with its result.
func withCPU<T>(daemons: [Int32] = [], _ body: () throws -> T) rethrows -> (T, cpu: Double) {
    let c0 = childrenCPU(), d0 = daemons.map(processCPU)
    let r = try body()
    let d1 = daemons.map(processCPU)
    return (r, childrenCPU() - c0 + zip(d1, d0).map { $0 - $1 }.reduce(0, +))
}
