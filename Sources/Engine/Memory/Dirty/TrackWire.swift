import Glibc

/// One parcel as bytes, and one message with fds over a unix socket: shared by the track store
/// (the caller's datagram socket) and the keeper (cryo's own seqpacket socket).
enum TrackWire {
    static let magic: UInt64 = 0x3154_4b52_544f_5952  // "RYOTRKT1", little-endian
    static let headerSize = 32
    static let maxMessage = 1 << 20
    static let maxFds = 16

    static func encode(_ parcel: TrackParcel) -> [UInt8] {
        var payload: [UInt8] = []
        payload.reserveCapacity(headerSize + 16 * parcel.armed.count)
        payload.putU64(magic)
        payload.putU32(UInt32(bitPattern: parcel.pid))
        payload.putU32(parcel.backend == .softDirty ? 2 : parcel.backend == .uffdWriteProtect ? 1 : 0)
        payload.putU64(parcel.startTime)
        payload.putU32(UInt32(parcel.armed.count))
        payload.putU32(0)
        for r in parcel.armed { payload.putU64(r.start); payload.putU64(r.end) }
        return payload
    }

    /// Parses a parcel; `nil` reason on success. Throws nothing so each caller names its own source.
    static func decode(_ b: ArraySlice<UInt8>, fds: [Int32]) -> Result<TrackParcel, WireError> {
        let b = Array(b)
        guard b.count >= headerSize, b.u64(at: 0) == magic else {
            return .failure(WireError(reason: "\(b.count) bytes without the cryo track header"))
        }
        let count = Int(b.u32(at: 24))
        guard b.count == headerSize + 16 * count else {
            return .failure(WireError(reason: "\(count) ranges announced in \(b.count) bytes"))
        }
        let backend: DirtyTrackingBackend
        switch b.u32(at: 12) {
        case 1: backend = .uffdWriteProtect
        case 2: backend = .softDirty
        default: backend = .none
        }
        var armed: [PageRun] = []
        for i in 0..<count {
            let s = b.u64(at: headerSize + 16 * i), e = b.u64(at: headerSize + 16 * i + 8)
            guard s < e, s % pageSize == 0, e % pageSize == 0, (armed.last?.end ?? 0) <= s else {
                return .failure(WireError(reason: "bad armed range 0x\(String(s, radix: 16))-0x\(String(e, radix: 16))"))
            }
            armed.append(PageRun(start: s, end: e))
        }
        return .success(TrackParcel(pid: Int32(bitPattern: b.u32(at: 8)), startTime: b.u64(at: 16), backend: backend, fds: fds, armed: armed))
    }

    struct WireError: Error { let reason: String }

    /// One sendmsg with `fds` as SCM_RIGHTS (duplicated by the kernel). Returns bytes sent, or -1 with errno set.
    static func send(_ sock: Int32, _ payload: [UInt8], fds: [Int32], flags: Int32) -> Int {
        let fdBytes = fds.count * 4
        let space = fds.isEmpty ? 0 : 16 + ((fdBytes + 7) & ~7)
        var control = [UInt8](repeating: 0, count: max(space, 1))
        if !fds.isEmpty {
            control.withUnsafeMutableBytes { c in
                c.storeBytes(of: 16 + fdBytes, toByteOffset: 0, as: Int.self)  // cmsg_len
                c.storeBytes(of: SOL_SOCKET, toByteOffset: 8, as: Int32.self)
                c.storeBytes(of: 1 /* SCM_RIGHTS */, toByteOffset: 12, as: Int32.self)
                for (i, f) in fds.enumerated() { c.storeBytes(of: f, toByteOffset: 16 + 4 * i, as: Int32.self) }
            }
        }
        var bytes = payload
        if bytes.isEmpty { bytes = [0] }
        return bytes.withUnsafeMutableBytes { p -> Int in
            control.withUnsafeMutableBytes { c -> Int in
                var iov = iovec(iov_base: p.baseAddress, iov_len: payload.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    if space > 0 { msg.msg_control = c.baseAddress; msg.msg_controllen = space }
                    return sendmsg(sock, &msg, flags)
                }
            }
        }
    }

    struct Received {
        /// Bytes received, 0 at end of stream, or -1 with `errno` set.
        var count: Int
        var errno: Int32 = 0
        var fds: [Int32] = []
        var truncated = false
    }

    /// One recvmsg into `buf`; the fds it carried are ours (close-on-exec).
    static func receive(_ sock: Int32, into buf: inout [UInt8], flags: Int32) -> Received {
        var control = [UInt8](repeating: 0, count: 16 + maxFds * 4)
        var mflags: Int32 = 0
        var controlLen = 0
        var err: Int32 = 0
        let n = buf.withUnsafeMutableBytes { p -> Int in
            control.withUnsafeMutableBytes { c -> Int in
                var iov = iovec(iov_base: p.baseAddress, iov_len: p.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = c.baseAddress
                    msg.msg_controllen = c.count
                    let r = recvmsg(sock, &msg, flags | Int32(MSG_CMSG_CLOEXEC))
                    err = Glibc.errno
                    mflags = msg.msg_flags
                    controlLen = msg.msg_controllen
                    return r
                }
            }
        }
        if n < 0 { return Received(count: -1, errno: err) }
        var out = Received(count: n)
        if controlLen >= 16 {
            control.withUnsafeBytes { c in
                let len = c.load(fromByteOffset: 0, as: Int.self)
                let level = c.load(fromByteOffset: 8, as: Int32.self)
                let type = c.load(fromByteOffset: 12, as: Int32.self)
                if level == SOL_SOCKET && type == 1 && len >= 16 {
                    for i in 0..<min((len - 16) / 4, maxFds) { out.fds.append(c.load(fromByteOffset: 16 + 4 * i, as: Int32.self)) }
                }
            }
        }
        out.truncated = mflags & Int32(MSG_TRUNC) != 0 || mflags & Int32(MSG_CTRUNC) != 0
        return out
    }
}
