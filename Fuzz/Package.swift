// swift-tools-version:6.1
import Foundation
import PackageDescription

// libFuzzer targets over the agent's parsers, in a package of their own so that the product's
// build is unchanged. Built and run by scripts/fuzz (see RELIABILITY.md):
//   swift build --package-path Fuzz --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
// Each target reaches the parsers' internals with @testable imports, which debug builds allow.

/// A path dependency's identity is its directory's name, which is whatever the checkout is
/// called (a worktree, CI's clone), so it is read from where this manifest lives.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let agent = root.lastPathComponent.lowercased()

func fuzzer(_ name: String, _ products: [String], also: [Target.Dependency] = []) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: agent) } + also,
        swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
    )
}

let package = Package(
    name: "datasource-agent-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: root.path),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    ],
    targets: [
        // Scratch files and the input helpers every fuzzer shares.
        .target(name: "FuzzSupport", dependencies: ["LibFuzzerDriver"], swiftSettings: [.enableUpcomingFeature("ExistentialAny")]),
        // The declaration of libFuzzer's driver entry point.
        .target(name: "LibFuzzerDriver"),
        // Runs the upload pipeline on a fuzz input, for the readers' fuzzers.
        .target(
            name: "IngestFuzzing",
            dependencies: [
                "FuzzSupport", .product(name: "LocalStore", package: agent), .product(name: "DataSourceDomain", package: agent),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        ),
        fuzzer("FuzzFrames", ["JSONRPC", "JSONKit", "AgentService", "DataSourceDomain"], also: [.product(name: "Logging", package: "swift-log")]),
        fuzzer("FuzzJSON", ["JSONKit"]),
        fuzzer("FuzzFilter", ["DataSourceDomain", "LocalStore"], also: [.product(name: "GRDB", package: "GRDB.swift")]),
        fuzzer("FuzzDelimited", [], also: ["IngestFuzzing"]),
        fuzzer("FuzzJSONReaders", [], also: ["IngestFuzzing"]),
        fuzzer("FuzzXLSX", [], also: ["IngestFuzzing", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        fuzzer("FuzzODS", [], also: ["IngestFuzzing", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        // poppler comes with LocalStore (its PDFText target links poppler-cpp through pkg-config).
        fuzzer("FuzzPDF", [], also: ["IngestFuzzing"]),
        fuzzer("FuzzPDFTable", ["LocalStore"]),
        fuzzer("FuzzSQL", ["DataSourceDomain", "LocalStore"]),
        fuzzer("FuzzMultipart", ["RESTFace"]),
    ]
)
