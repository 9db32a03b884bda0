import Glibc

extension Array where Element == iovec {
    /// Moves past `n` bytes a short writev/sendmsg took, from the first vector on.
    mutating func consume(_ n: Int) {
        var k = n
        for i in indices where k > 0 {
            let t = Swift.min(k, self[i].iov_len)
            self[i].iov_len -= t
            if let p = self[i].iov_base { self[i].iov_base = p + t }
            k -= t
        }
    }
}
