// swift-tools-version:6.0
import PackageDescription
import Foundation

// Workloads are C programs, one folder each under Sources/TestPrograms (except `lib`,
// the shared zdtm protocol library). Adding a workload is adding a folder.
let packageDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
let workloadRoot = packageDir + "/Sources/TestPrograms"
let workloadNames: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: workloadRoot)) ?? [])
    .filter { $0 != "lib" && !$0.hasPrefix(".") }
    .filter { FileManager.default.fileExists(atPath: workloadRoot + "/" + $0 + "/main.c") }
    .sorted()

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
        .library(name: "Engine", targets: ["Engine"]),
    ] + workloadNames.map { .executable(name: $0, targets: [$0]) },
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
        .target(
            name: "Engine",
            dependencies: [
                "CKernel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Engine",
            exclude: ["Images/Schema/proto"]
        ),
        .executableTarget(
            name: "cryo",
            dependencies: [
                "Engine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/cryo"
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
            dependencies: ["Engine", "ZDTMCore"],
            path: "Tests/SmokeTests"
        ),
    ] + workloadTargets
)
