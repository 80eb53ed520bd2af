import AgentService
import ArgumentParser
import DataSourceDomain
import DownloadListener
import Foundation
import JSONKit
import JSONRPC
import LocalStore
import Logging
import PostgresStore
import RemoteBackend
import ServiceLifecycle
import Synchronization
import UnixSignals

@main
struct DatasourceAgent: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "datasource-agent",
        abstract: "Manage tabular data sources over JSON-RPC 2.0 on stdio (LSP Content-Length or newline-delimited JSON framing; also an MCP server).",
        discussion: """
            With no subcommand, runs `serve`: the stdio service. Logs go to stderr; stdout carries \
            protocol messages only. See protocol/README.md for the methods.
            """,
        version: version,
        subcommands: [Serve.self, ServeHTTP.self, Keys.self, Check.self, PrintOpenRPC.self, PrintOpenAPI.self, ProcessPending.self, PDFWords.self],
        defaultSubcommand: Serve.self
    )
}

enum BackendKind: String, ExpressibleByArgument, CaseIterable {
    case local, remote
}

/// Options every command that opens a store shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Store directory (env DATASOURCE_AGENT_STORE; default $XDG_DATA_HOME/datasource-agent, else ~/.local/share/datasource-agent).",
        valueName: "DIR"))
    var store: String?

    @Option(name: .long, help: ArgumentHelp(
        "trace|debug|info|warning|error; logs go to stderr (env DATASOURCE_AGENT_LOG_LEVEL; default warning).", valueName: "LEVEL"))
    var logLevel: String?

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// `--store` or DATASOURCE_AGENT_STORE as given.
    func storeText() throws -> String {
        guard let text = store ?? environment["DATASOURCE_AGENT_STORE"] else { throw ValidationError("--store is missing") }
        return text
    }

    /// `--store postgres://…` (or the same in DATASOURCE_AGENT_STORE): the PostgreSQL store (§12).
    func postgresURL() throws -> PostgresStoreURL? {
        guard let text = store ?? environment["DATASOURCE_AGENT_STORE"], PostgresStoreURL.isPostgresURL(text) else { return nil }
        do {
            return try PostgresStoreURL(text, environment: environment)
        } catch {
            throw ValidationError("--store: \(error)")
        }
    }

    func storeURL() -> URL {
        if let store = store ?? environment["DATASOURCE_AGENT_STORE"], !store.isEmpty {
            return URL(fileURLWithPath: store, isDirectory: true)
        }
        return StoreLayout.defaultRoot(environment: environment)
    }

    func resolvedLogLevel() throws -> Logger.Level {
        let text = (logLevel ?? environment["DATASOURCE_AGENT_LOG_LEVEL"] ?? "warning").lowercased()
        guard let level = Logger.Level(rawValue: text == "warn" ? "warning" : text) else {
            throw ValidationError("--log-level must be one of trace, debug, info, warning, error (got \(text))")
        }
        return level
    }

    /// Logs go to stderr only: stdout belongs to the protocol.
    func bootstrapLogging() throws -> Logger {
        let level = try resolvedLogLevel()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "datasource-agent")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve JSON-RPC 2.0 / MCP on stdin and stdout (the default).")

    @OptionGroup var storeOptions: StoreOptions

    @Option(name: .long, help: ArgumentHelp(
        "local (default: the store directory) or remote (a Claro v2 REST API at --base-url, key from CLARO_API_KEY) (env DATASOURCE_AGENT_BACKEND).",
        valueName: "KIND"))
    var backend: String?

    @Option(name: .long, help: ArgumentHelp(
        "API root of the Claro v2 REST API for --backend remote, e.g. https://secure-api.getclaro.ai/api/v2 or http://127.0.0.1:8080/api/v2 (env CLARO_BASE_URL). The key is read from CLARO_API_KEY.",
        valueName: "URL"))
    var baseURL: String?

    @Option(name: .long, help: ArgumentHelp(
        "Remote backend: seconds a cached list/get answer (<store>/cache.sqlite) is served without asking the server when a request gives no maxAge; default 10 (env DATASOURCE_AGENT_CACHE_TTL).",
        valueName: "SECONDS"))
    var cacheTTL: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Remote backend: seconds a request to the server may take, answer included (uploads: 300); default 30 (env DATASOURCE_AGENT_REQUEST_TIMEOUT).",
        valueName: "SECONDS"))
    var requestTimeout: Int?

    @Flag(name: .long, help: "Answer every mutating method with ACCESS_DENIED (env DATASOURCE_AGENT_READ_ONLY=1).")
    var readOnly = false

    @Option(name: .long, help: ArgumentHelp(
        "Largest message accepted, in bytes; default 67108864 = 64 MiB (env DATASOURCE_AGENT_MAX_MESSAGE_BYTES).", valueName: "N"))
    var maxMessageBytes: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Let path uploads read only files under DIR; repeatable (env DATASOURCE_AGENT_ALLOW_PATH, DIRs separated by ':'). Default: any file the agent can read, outside its store.",
        valueName: "DIR"))
    var allowPath: [String] = []

    @Option(name: .long, help: ArgumentHelp("Port of the loopback download listener; 0 = ephemeral (env DATASOURCE_AGENT_DOWNLOAD_PORT).", valueName: "PORT"))
    var downloadPort: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Seconds a download-listener connection may stay idle before it is closed; default 30 (env DATASOURCE_AGENT_DOWNLOAD_IDLE_TIMEOUT).",
        valueName: "SECONDS"))
    var downloadIdleTimeout: Double?

    func downloadIdleTimeoutValue() throws -> Duration {
        let text = downloadIdleTimeout.map { String($0) } ?? storeOptions.environment["DATASOURCE_AGENT_DOWNLOAD_IDLE_TIMEOUT"]
        guard let text, !text.isEmpty else { return DownloadServer.defaultIdleTimeout }
        guard let seconds = Double(text), seconds > 0, seconds <= 86400 else {
            throw ValidationError("--download-idle-timeout must be a number of seconds in (0, 86400] (got \(text))")
        }
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }

    func downloadPortValue() throws -> Int {
        let text = downloadPort.map(String.init) ?? storeOptions.environment["DATASOURCE_AGENT_DOWNLOAD_PORT"] ?? "0"
        guard let port = Int(text), (0...65535).contains(port) else {
            FileHandle.standardError.write(Data("Error: --download-port must be 0...65535\n".utf8))
            throw ExitCode.validationFailure
        }
        return port
    }

    static let defaultMaxMessageBytes = 64 * 1024 * 1024

    func maxMessageBytesValue() throws -> Int {
        if let maxMessageBytes { return maxMessageBytes }
        guard let text = storeOptions.environment["DATASOURCE_AGENT_MAX_MESSAGE_BYTES"], !text.isEmpty else { return Self.defaultMaxMessageBytes }
        guard let value = Int(text), value > 0 else {
            throw ValidationError("DATASOURCE_AGENT_MAX_MESSAGE_BYTES must be a positive number of bytes (got \(text))")
        }
        return value
    }

    var readOnlyValue: Bool {
        readOnly || ["1", "true", "yes"].contains(storeOptions.environment["DATASOURCE_AGENT_READ_ONLY"]?.lowercased() ?? "")
    }

    var allowedPaths: [String] {
        if !allowPath.isEmpty { return allowPath }
        return (storeOptions.environment["DATASOURCE_AGENT_ALLOW_PATH"] ?? "").split(separator: ":").map(String.init).filter { !$0.isEmpty }
    }

    func cacheTTLValue() throws -> Int {
        if let cacheTTL { return cacheTTL }
        guard let text = storeOptions.environment["DATASOURCE_AGENT_CACHE_TTL"], !text.isEmpty else { return 10 }
        guard let value = Int(text), value >= 0 else {
            throw ValidationError("DATASOURCE_AGENT_CACHE_TTL must be a number of seconds, 0 or more (got \(text))")
        }
        return value
    }

    func requestTimeoutValue() throws -> Int {
        if let requestTimeout { return requestTimeout }
        guard let text = storeOptions.environment["DATASOURCE_AGENT_REQUEST_TIMEOUT"], !text.isEmpty else { return 30 }
        guard let value = Int(text), value > 0 else {
            throw ValidationError("DATASOURCE_AGENT_REQUEST_TIMEOUT must be a positive number of seconds (got \(text))")
        }
        return value
    }

    func validate() throws {
        if let requestTimeout, requestTimeout <= 0 { throw ValidationError("--request-timeout must be a positive number of seconds") }
        if let cacheTTL, cacheTTL < 0 { throw ValidationError("--cache-ttl must be 0 or more seconds") }
        if let maxMessageBytes, maxMessageBytes <= 0 { throw ValidationError("--max-message-bytes must be positive") }
        for directory in allowPath where !directory.hasPrefix("/") {
            throw ValidationError("--allow-path takes absolute directories (got \(directory))")
        }
    }

    func run() async throws {
        let logger = try storeOptions.bootstrapLogging()
        let environment = storeOptions.environment
        let kindText = backend ?? environment["DATASOURCE_AGENT_BACKEND"] ?? "local"
        guard let kind = BackendKind(rawValue: kindText) else {
            throw ValidationError("--backend must be local or remote (got \(kindText))")
        }
        let maxMessageBytes = try maxMessageBytesValue()
        let backendObject: any DataSourceBackend
        var backendName = kind.rawValue
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        switch kind {
        case .local:
            PDFWords.isolatePDFReading()
            if let url = try storeOptions.postgresURL() {
                let postgres: PostgresBackend
                do {
                    postgres = try await PostgresBackend.open(url, logger: logger, allowedPaths: allowedPaths)
                } catch {
                    logger.critical("cannot open the PostgreSQL store \(url.redacted): \(String(reflecting: error))")
                    throw ExitCode.failure
                }
                let downloads = DownloadServer(
                    authority: postgres, port: try downloadPortValue(), idleTimeout: try downloadIdleTimeoutValue(), logger: logger)
                postgres.attachDownloadServer(downloads)
                backendObject = postgres
                backendName = "postgres"
                // First in, last out: the listener, the leases and the connections outlive the stdio session.
                services = [
                    .init(service: postgres),
                    .init(service: ProcessingHandOff(backend: postgres, url: try storeOptions.storeText(), logger: logger)),
                    .init(service: downloads),
                ]
                break
            }
            let root = storeOptions.storeURL()
            let local: LocalBackend
            let downloads: DownloadServer
            do {
                local = try LocalBackend(root: root, logger: logger, allowedPaths: allowedPaths)
                downloads = DownloadServer(
                    authority: local, port: try downloadPortValue(), idleTimeout: try downloadIdleTimeoutValue(), logger: logger)
                local.attachDownloadServer(downloads)
            } catch let exit as ExitCode {
                throw exit
            } catch let error as StoreOpenError {
                // Said whatever the log level: the agent is about to exit.
                FileHandle.standardError.write(Data("datasource-agent: \(error)\n".utf8))
                throw ExitCode.failure
            } catch {
                FileHandle.standardError.write(Data("datasource-agent: cannot open the store at \(root.path): \(error)\n".utf8))
                throw ExitCode.failure
            }
            backendObject = local
            services = [
                .init(service: ProcessingHandOff(backend: local, store: root, logger: logger)),
                .init(service: downloads),
                .init(service: ChangeWatching(backend: local)),
            ]
        case .remote:
            let remote = try makeRemoteBackend(logger: logger)
            backendObject = remote
            // First in, last out: the watcher and the HTTP client outlive the stdio session.
            services = [.init(service: remote)]
        }
        let service = AgentService(
            backend: backendObject,
            configuration: ServiceConfiguration(
                version: DatasourceAgent.version, backendName: backendName, readOnly: readOnlyValue,
                debugMethods: environment["DATASOURCE_AGENT_DEBUG_METHODS"] == "1",
                apiKey: environment["DATASOURCE_AGENT_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }),
            logger: logger)
        let stdio = StdioService(server: StdioServer(maxMessageBytes: maxMessageBytes, logger: logger), service: service)
        logger.info("serving on stdio", metadata: ["backend": "\(backendName)"])
        // One root for everything that runs: the group shuts down in reverse order, so the
        // stdio session drains first (it may still need the listener and the watcher), and
        // unfinished processing is handed on last.
        services.append(.init(service: stdio, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm],
            logger: logger))
        try await group.run()
        Foundation.exit(stdio.exitCode)
    }
}

extension Serve {
    /// `--backend remote`: the base URL from `--base-url` or CLARO_BASE_URL, the key from
    /// CLARO_API_KEY, the cache in the store directory.
    func makeRemoteBackend(logger: Logger) throws -> ClaroBackend {
        let environment = storeOptions.environment
        guard let base = (baseURL ?? environment["CLARO_BASE_URL"]).flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw ValidationError("--backend remote needs --base-url URL (or CLARO_BASE_URL), the API root such as https://secure-api.getclaro.ai/api/v2")
        }
        guard let url = URL(string: base), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), url.host != nil else {
            throw ValidationError("--base-url must be an http or https URL (got \(base))")
        }
        let apiKey = environment["CLARO_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if apiKey == nil { logger.warning("CLARO_API_KEY is not set; requests to \(base) carry no Authorization header") }
        let root = storeOptions.storeURL()
        do {
            var settings = ClaroClientSettings()
            settings.requestTimeout = .seconds(try requestTimeoutValue())
            return try ClaroBackend(
                baseURL: base, apiKey: apiKey, store: root, cacheTTL: try cacheTTLValue(), logger: logger, settings: settings)
        } catch let error as ValidationError {
            throw error
        } catch {
            logger.critical("cannot open the metadata cache in \(root.path): \(error)")
            throw ExitCode.failure
        }
    }
}

/// The stdio session as a service: it ends when the client leaves (or the lifecycle's
/// `exit`), and a graceful shutdown of the group (SIGTERM) ends it the graceful way.
final class StdioService: Service, Sendable {
    let server: StdioServer
    let service: AgentService
    private let code = Atomic<Int32>(0)

    init(server: StdioServer, service: AgentService) {
        self.server = server
        self.service = service
    }

    var exitCode: Int32 { code.load(ordering: .acquiring) }

    func run() async throws {
        let result = await withGracefulShutdownHandler {
            await server.run { session in service.makeSessionDelegate(for: session) }
        } onGracefulShutdown: { [server] in
            server.shutDownGracefully()
        }
        code.store(result, ordering: .releasing)
    }
}

/// Announces status changes until the group shuts down.
struct ChangeWatching: Service {
    let backend: LocalBackend

    func run() async throws {
        try? await gracefulShutdown()
        backend.stopWatchingChanges()
    }
}

/// Hands processing that is queued or running on to `process-pending` when the group shuts
/// down, so that an accepted upload is finished even though its client left (on a PostgreSQL
/// store, once this agent has given the leases up: the group stops the backend first).
struct ProcessingHandOff: Service {
    let hasPendingProcessing: @Sendable () -> Bool
    let handOff: @Sendable () -> Void

    init(backend: LocalBackend, store: URL, logger: Logger) {
        hasPendingProcessing = { backend.hasPendingProcessing }
        handOff = { ProcessPending.handOff(store: store, logger: logger) }
    }

    init(backend: PostgresBackend, url: String, logger: Logger) {
        hasPendingProcessing = { backend.hasPendingProcessing }
        handOff = { ProcessPending.handOff(postgres: url, logger: logger) }
    }

    func run() async throws {
        try? await gracefulShutdown()
        if hasPendingProcessing() { handOff() }
    }
}

struct PrintOpenRPC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openrpc", abstract: "Print the OpenRPC document of the JSON-RPC methods (protocol/openrpc.json).")

    func run() throws {
        let document = AgentService.openRPCDocument(version: DatasourceAgent.version)
        // The committed protocol/openrpc.json is exactly this output.
        FileHandle.standardOutput.write(Data(document.prettyPrinted(indent: 2) + [0x0A]))
    }
}
