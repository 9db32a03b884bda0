import Foundation

/// A failed system call, with what cryo was doing at the time (pid, file, address...).
public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    public let context: String

    public init(call: String, errno: Int32, context: String = "") {
        self.call = call; self.errno = errno; self.context = context
    }

    public var description: String {
        let msg = String(cString: strerror(errno))
        return context.isEmpty ? "\(call): \(msg) (errno \(errno))" : "\(context): \(call): \(msg) (errno \(errno))"
    }
}
