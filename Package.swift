// swift-tools-version:6.0
import PackageDescription

// Workloads are C programs, one folder each under Sources/TestPrograms (beside `lib`, the
// shared zdtm protocol library). Adding one is adding its folder and its name here: SwiftPM
// caches this manifest by content, so a folder listing here would miss new folders.
let workloadNames: [String] = [
    "bigheap00", "blocked00", "fork00", "brk00", "clone00", "cow00", "creds00", "deleted00", "dirty00", "dirty01", "dirty02", "env00", "file00", "file01", "fpu00", "itimer00", "maps00", "maps01", "memhog00", "memtree00",
    "pause00", "ptimer00", "rlimit00", "shfile00", "shm00", "sigact00", "sleeping00", "sparse00", "thread00", "tree00", "vdso00", "zombie00",
    "pipe00", "pipe01", "pipe02", "fifo00", "unix00", "unix01", "unix02", "unix03", "eventfd00", "epoll00", "signalfd00",
    "timerfd00", "inotify00", "memfd00", "udp00", "tcp00", "tcp01", "tcp02",
    "sched00", "sockopt00", "membarrier00", "zombiepg00", "zombiepg01", "procattr00", "fanmark00", "procattr01", "numa00", "affinity00",
    "lazy00", "lazy01", "stopped00", "vdso01", "madv00",
    "lazy02", "shmemfd00", "memfdmap00", "tmpfile00", "procfd00",
    "seccomp00", "seccomp01", "caps00", "cgroup00",
    "netns00",
    "lock00", "pidfd00",
    "pty00", "tcp03", "mnt00", "mntprop00",
    "ptydata00", "ptyhup00",
    "fown00", "itimer01", "unix04", "droppable00", "nsfd00",
    "unix05", "unix06",
    "sysvshm00", "sysvsem00", "sysvmsg00", "sysvhost00",
    "timens00",
    "cgroupns00",
    "sockraw00", "sockicmp00", "sockpacket00", "udplite00", "netlink00",
    "timerslack00", "unix07", "netsysctl00", "ptyctty00", "tcp04", "pdeath00",
]

// Per-workload extra libraries, by folder name.
let workloadLibraries: [String: [String]] = [
    "creds00": ["cap"],
]

let workloadTargets: [Target] = workloadNames.map { name in
    .executableTarget(
        name: name,
        dependencies: ["ZDTMTestLib"],
        path: "Sources/TestPrograms/\(name)",
        cSettings: [.unsafeFlags(["-O1", "-Wall"])],
        linkerSettings: (workloadLibraries[name] ?? []).map { .linkedLibrary($0) } + [.linkedLibrary("pthread")]
    )
}

let package = Package(
    name: "cryo",
    products: [
        .executable(name: "cryo", targets: ["cryo"]),
        .executable(name: "zdtm", targets: ["zdtm"]),
        .executable(name: "cryo-bench", targets: ["cryo-bench"]),
        .library(name: "Engine", targets: ["Engine"]),
    ] + (workloadNames + ["swift00"]).map { .executable(name: $0, targets: [$0]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .target(
            name: "CKernel",
            path: "Sources/CKernel"
        ),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "Engine",
            dependencies: [
                "CKernel",
                "CZstd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Engine",
            exclude: ["Images/Schema/proto", "Images/Schema/generate.sh", "RPC/Schema/proto", "RPC/Schema/generate.sh"]
        ),
        .executableTarget(
            name: "cryo",
            dependencies: [
                "Engine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/cryo",
            // Swift's runtime and Foundation linked in: a release cryo starts in ~2 ms of CPU
            // instead of ~9 (no loading and relocating of Foundation and ICU); every restore
            // pays it, a lazy one's first answer is mostly that (docs/LAZY.md).
            // (The group: -static-stdlib alone leaves Foundation's own archives unresolved.)
            linkerSettings: [.unsafeFlags(["-static-stdlib"] + ["--start-group", "-lFoundation", "-lCoreFoundation", "-lFoundationEssentials",
                "-lFoundationInternationalization", "-l_FoundationICU", "-l_FoundationCShims", "-l_FoundationCollections", "-lswiftSynchronization",
                "-lswiftDispatch", "-ldispatch", "-lBlocksRuntime", "-lstdc++", "--end-group"].flatMap { ["-Xlinker", $0] }, .when(configuration: .release))]
        ),
        .target(
            name: "ZDTMCore",
            dependencies: [
                "Engine",
                "CKernel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Sources/ZDTMCore"
        ),
        .executableTarget(
            name: "zdtm",
            dependencies: [
                "ZDTMCore",
                "Engine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/ZDTM"
        ),
        .executableTarget(
            name: "cryo-bench",
            dependencies: ["Engine", "CKernel", "ZDTMCore"],
            path: "Sources/cryo-bench"
        ),
        .target(
            name: "ZDTMTestLib",
            path: "Sources/TestPrograms/lib",
            cSettings: [.unsafeFlags(["-O1", "-Wall"])]
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: ["Engine", "CKernel"],
            path: "Tests/EngineTests",
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "SmokeTests",
            dependencies: ["Engine", "ZDTMCore", "CKernel"],
            path: "Tests/SmokeTests"
        ),
        // A workload in Swift: the Swift runtime itself must survive C/R.
        .executableTarget(name: "swift00", path: "Sources/TestPrograms/swift00", swiftSettings: [.swiftLanguageMode(.v5)]),
    ] + workloadTargets
)
