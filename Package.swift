// swift-tools-version:6.1
import PackageDescription

/// Settings every target shares: existentials written `any P`, and a file may use only the
/// members of modules it imports itself.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The store reads `struct stat`, whose members the importer attributes to whichever module
/// (Glibc, CoreFoundation, CDispatch) loaded the header first — with ZIPFoundation in the graph
/// that differs between debug and release builds — so MemberImportVisibility stays off there.
let strictStore: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "datasource-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "datasource-agent", targets: ["DatasourceAgent"]),
        // The libraries the fuzz targets (Fuzz/Package.swift) link; nothing else uses them.
        .library(name: "JSONKit", targets: ["JSONKit"]),
        .library(name: "JSONRPC", targets: ["JSONRPC"]),
        .library(name: "DataSourceDomain", targets: ["DataSourceDomain"]),
        .library(name: "LocalStore", targets: ["LocalStore"]),
        .library(name: "AgentService", targets: ["AgentService"]),
        .library(name: "RESTFace", targets: ["RESTFace"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/vapor/postgres-nio", exact: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
    ],
    targets: [
        // JSON values, a strict byte-level parser and a fast writer; shared by every layer.
        .target(name: "JSONKit", swiftSettings: strict),
        // JSON-RPC 2.0 over stdio: framing, validation, dispatch, cancellation, the one writer.
        // Knows nothing of data sources, nor of the LSP/MCP lifecycle.
        .target(
            name: "JSONRPC",
            dependencies: ["JSONKit", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The data-source model, Claro errors, the filter language and the backend protocol.
        .target(name: "DataSourceDomain", dependencies: ["JSONKit"], swiftSettings: strict),
        // poppler's C++ library from the system (pkg-config), and the small C++ target that
        // reads words with their boxes from a PDF through it behind a C interface, so that the
        // rest of the package needs neither C++ interoperability nor poppler's headers.
        .systemLibrary(name: "CPopplerCpp", pkgConfig: "poppler-cpp", providers: [.apt(["libpoppler-cpp-dev"]), .brew(["poppler"])]),
        .target(name: "PDFText", dependencies: ["CPopplerCpp"]),
        // The embedded store on GRDB and its ingestion pipeline.
        .target(
            name: "LocalStore",
            dependencies: [
                "DataSourceDomain",
                "JSONKit",
                "PDFText",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            swiftSettings: strictStore
        ),
        // The store on PostgreSQL (SPEC §12): catalog, originals, typed tables, leases and
        // LISTEN/NOTIFY on postgres-nio; ingestion through LocalStore's shared pipeline.
        .target(
            name: "PostgresStore",
            dependencies: [
                "DataSourceDomain",
                "JSONKit",
                "LocalStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The loopback HTTP listener that serves signed download links.
        .target(
            name: "DownloadListener",
            dependencies: [
                "DataSourceDomain",
                "JSONKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The Claro v2 REST face (serve-http): routes over the method descriptors, Bearer keys,
        // rate limits, multipart uploads; knows no store.
        .target(
            name: "RESTFace",
            dependencies: [
                "AgentService",
                "JSONRPC",
                "DataSourceDomain",
                "DownloadListener",
                "JSONKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The remote backend: a client of a Claro v2 REST API (async-http-client), with a
        // GRDB metadata cache and a watcher of processing sources.
        .target(
            name: "RemoteBackend",
            dependencies: [
                "DataSourceDomain",
                "JSONKit",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Maps method descriptors onto JSON-RPC, MCP tools and notifications; the lifecycle.
        .target(
            name: "AgentService",
            dependencies: [
                "JSONKit",
                "JSONRPC",
                "DataSourceDomain",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "DatasourceAgent",
            dependencies: [
                "JSONRPC",
                "DataSourceDomain",
                "LocalStore",
                "PostgresStore",
                "RemoteBackend",
                "DownloadListener",
                "AgentService",
                "RESTFace",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "JSONKitTests", dependencies: ["JSONKit"], swiftSettings: strict),
        .testTarget(name: "JSONRPCTests", dependencies: ["JSONRPC", "JSONKit"], swiftSettings: strict),
        .testTarget(name: "DataSourceDomainTests", dependencies: ["DataSourceDomain", "JSONKit"], swiftSettings: strict),
        .testTarget(
            name: "LocalStoreTests",
            dependencies: ["LocalStore", "DataSourceDomain", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(
            name: "PostgresStoreTests",
            dependencies: ["PostgresStore", "DataSourceDomain", .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: strict),
        .testTarget(name: "RESTFaceTests", dependencies: ["RESTFace", "AgentService", "JSONKit"], swiftSettings: strict),
        .testTarget(
            name: "RemoteBackendTests",
            dependencies: ["RemoteBackend", "DataSourceDomain", "JSONKit", .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AgentServiceTests",
            dependencies: ["AgentService", "JSONRPC", "DataSourceDomain", "JSONKit", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
    ],
    cxxLanguageStandard: .cxx17
)
