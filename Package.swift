// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "datasource-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "datasource-agent", targets: ["DatasourceAgent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // JSON values, a strict byte-level parser and a fast writer; shared by every layer.
        .target(name: "JSONKit"),
        // JSON-RPC 2.0 over stdio: framing, dispatch, lifecycle. Knows nothing of data sources.
        .target(
            name: "JSONRPC",
            dependencies: ["JSONKit", .product(name: "Logging", package: "swift-log")]
        ),
        // The data-source model, errors, filter language and the backend protocol.
        .target(
            name: "DataSourceDomain",
            dependencies: ["JSONKit"]
        ),
        // The embedded store on GRDB and its ingestion pipeline.
        .target(
            name: "LocalStore",
            dependencies: [
                "DataSourceDomain",
                "JSONKit",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The loopback HTTP listener that serves signed download links.
        .target(
            name: "DownloadListener",
            dependencies: [
                "DataSourceDomain",
                "JSONKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Maps JSON-RPC methods, MCP tools and notifications onto a backend.
        .target(
            name: "AgentService",
            dependencies: [
                "JSONRPC",
                "DataSourceDomain",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "DatasourceAgent",
            dependencies: [
                "JSONRPC",
                "DataSourceDomain",
                "LocalStore",
                "DownloadListener",
                "AgentService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "JSONKitTests", dependencies: ["JSONKit"]),
        .testTarget(name: "JSONRPCTests", dependencies: ["JSONRPC", "JSONKit"]),
        .testTarget(name: "DataSourceDomainTests", dependencies: ["DataSourceDomain", "JSONKit"]),
        .testTarget(name: "LocalStoreTests", dependencies: ["LocalStore", "DataSourceDomain"]),
        .testTarget(name: "AgentServiceTests", dependencies: ["AgentService", "JSONRPC", "DataSourceDomain", "JSONKit"]),
    ]
)
