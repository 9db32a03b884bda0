import Engine
import Foundation
import Glibc

/// Where zdtm finds its suites, the workloads and cryo, relative to its own binary.
public enum Locations {
    /// The folder holding the running executable (.build/debug for zdtm and the test bundle).
    public static func selfDir() -> String {
        let exe = (try? ProcReader().exe(pid: getpid())) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    /// The nearest ancestor of `start` holding Package.swift and Suites/, else ./Suites.
    public static func suitesDir(from start: String = selfDir()) -> String {
        var dir = start
        while !dir.isEmpty {
            if FileManager.default.fileExists(atPath: dir + "/Package.swift")
                && FileManager.default.fileExists(atPath: dir + "/Suites/workloads.yaml") {
                return dir + "/Suites"
            }
            if dir == "/" { break }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return FileManager.default.currentDirectoryPath + "/Suites"
    }

    /// A fresh /tmp/zdtm-XXXXXX.
    public static func makeRunDir() throws -> String {
        var tmpl = Array("/tmp/zdtm-XXXXXX".utf8CString)
        guard let p = mkdtemp(&tmpl) else {
            throw SystemCallError(call: "mkdtemp", errno: errno, context: "run folder in /tmp")
        }
        return String(cString: p)
    }
}
