import Glibc
import XCTest
@testable import Engine

/// The pieces of the network namespace module that need no namespace: CRIU's --external veth
/// spelling, netlink attributes, iproute2's save streams and the route restore order.
final class NetNamespaceTests: XCTestCase {
    func testVethExternalSpellings() throws {
        let e = try VethExternals(parsing: ["veth[eth0]:vout@br0", "veth[eth1]:v1", "mnt[/x]:/y"])
        XCTAssertEqual(e.peers["eth0"], .init(outside: "vout", bridge: "br0"))
        XCTAssertEqual(e.peers["eth1"], .init(outside: "v1", bridge: nil))
        XCTAssertEqual(e.peers.count, 2, "other kinds of external belong elsewhere")
        for bad in ["veth[eth0]", "veth[eth0]vout", "veth[]:vout", "veth[eth0]:", "veth[eth0]:a-name-far-too-long-for-linux"] {
            XCTAssertThrowsError(try VethExternals(parsing: [bad]), bad) { XCTAssertTrue("\($0)".contains(bad), "\($0)") }
        }
    }

    func testAttributesRoundTripAndNest() {
        var inner: [UInt8] = []
        NlAttr.put(&inner, 1, string: "veth")
        var b: [UInt8] = []
        NlAttr.put(&b, 3, string: "eth0")
        NlAttr.put(&b, 4, u32: 1400)
        NlAttr.put(&b, 18 | NlAttr.nested, inner)
        XCTAssertEqual(b.count % 4, 0)
        let a = NlAttr.parse(b, from: 0)
        XCTAssertEqual(a.map(\.type), [3, 4, 18], "the nested flag is masked off")
        XCTAssertEqual(a[0].string, "eth0")
        XCTAssertEqual(a[1].u32, 1400)
        XCTAssertEqual(NlAttr.parse(a[2].data, from: 0).first?.string, "veth")
        // A length past the end stops the walk instead of reading beyond it.
        var cut = b
        cut[0] = 200
        XCTAssertTrue(NlAttr.parse(cut, from: 0).isEmpty)
    }

    func route(dst: [UInt8], len: UInt8, gateway: [UInt8]? = nil, prefsrc: [UInt8]? = nil) -> [UInt8] {
        var body: [UInt8] = [UInt8(AF_INET), len, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]
        NlAttr.put(&body, 1, dst)
        if let gateway { NlAttr.put(&body, 5, gateway) }
        if let prefsrc { NlAttr.put(&body, 7, prefsrc) }
        NlAttr.put(&body, 4, u32: 2)
        return RtNetlink.message(type: RtNetlink.newRoute, flags: 0, seq: 0, body: body)
    }

    func testRoutesRestoreInIproute2Order() {
        let viaGw = Route(message: route(dst: [10, 233, 5, 0], len: 24, gateway: [10, 233, 0, 1]))
        let net = Route(message: route(dst: [10, 233, 0, 0], len: 24, prefsrc: [10, 233, 0, 2]))
        let plain = Route(message: route(dst: [10, 233, 7, 0], len: 24))
        XCTAssertEqual([plain.restorePass, net.restorePass, viaGw.restorePass], [0, 1, 2])
        XCTAssertEqual(viaGw.description, "10.233.5.0/24 via 10.233.0.1 dev 2")
        XCTAssertEqual(viaGw.table, 254)
    }

    func testSaveStreamsKeepIproute2Magic() throws {
        let dir = NSTemporaryDirectory() + "/netns-stream-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let images = try ImageDirectory(path: dir, create: true)
        let msgs = [route(dst: [10, 233, 5, 0], len: 24, gateway: [10, 233, 0, 1]), route(dst: [10, 233, 7, 0], len: 24)]
        let bytes = NetNamespaceImages.stream(NetNamespaceImages.routeMagic, msgs)
        XCTAssertEqual(Array(bytes.prefix(4)), [0x24, 0x12, 0x31, 0x45], "ip route save's magic, little-endian")
        try images.writeBytes(images.filePath(.route, 7), bytes)
        XCTAssertEqual(try NetNamespaceImages.messages(images, .route, 7, magic: NetNamespaceImages.routeMagic), msgs)
        XCTAssertThrowsError(try NetNamespaceImages.messages(images, .route, 7, magic: NetNamespaceImages.addrMagic)) {
            XCTAssertTrue("\($0)".contains("route-7.img"), "\($0)")
        }
        try images.writeBytes(images.filePath(.route6, 7), Array(bytes.dropLast(3)))
        XCTAssertThrowsError(try NetNamespaceImages.messages(images, .route6, 7, magic: NetNamespaceImages.routeMagic)) {
            XCTAssertTrue("\($0)".contains("route6-7.img"), "\($0)")
        }
        XCTAssertEqual(ImageKind.parse(fileName: "route6-7.img")?.kind, .route6)
        XCTAssertEqual(ImageKind.parse(fileName: "netdev-4026532250.img")?.id, 4026532250)
    }
}
