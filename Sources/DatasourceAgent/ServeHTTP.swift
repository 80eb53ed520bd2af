import AgentService
import ArgumentParser
import DataSourceDomain
import Foundation
import JSONKit
import LocalStore
import Logging
import PostgresStore
import RESTFace
import ServiceLifecycle
import UnixSignals

/// `serve-http` (§10): the store as the Claro v2 REST API, next to any stdio agents on it.
struct ServeHTTP: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve-http",
        abstract: "Serve the store as the Claro v2 REST API (/api/v2/datasources…, Bearer keys, rate limits) and a web page at /.",
        discussion: """
            Routes: GET /api/v2/datasources, GET|DELETE /api/v2/datasources/{id}, GET /api/v2/datasources/{id}/data, \
            POST /api/v2/datasources/{id}/download, POST /api/v2/datasources/{id}/export, POST /api/v2/datasources \
            (multipart: file, optional options JSON and contentType), POST /api/v2/query, GET /api/v2/openapi.json; \
            GET /api/v2/events (server-sent statusChanged events; Last-Event-ID resumes; a browser opens it with a \
            token from POST /api/v2/events/token); signed links under /downloads/ and /exports/; the web page at / \
            (/app.js, /app.css), which needs no key itself and asks for one. Every API request needs \
            Authorization: Bearer KEY (keys create); \
            the store must have a key unless --no-auth, which is accepted only on a loopback address. \
            Prints "datasource-agent serve-http listening on http://HOST:PORT" to stderr once bound. \
            See protocol/README.md (REST face).
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Option(name: .long, help: ArgumentHelp(
        "Address to listen on, HOST:PORT ([IPv6]:PORT); port 0 picks a free one (env DATASOURCE_AGENT_LISTEN; default 127.0.0.1:8080).",
        valueName: "HOST:PORT"))
    var listen: String?

    @Flag(name: .long, help: "Serve a store that has no API key, with full access for every caller; only on a loopback address.")
    var noAuth = false

    @Option(name: .long, help: ArgumentHelp("Requests per minute per key, then 429.", valueName: "N"))
    var rateLimit: Int = 600

    @Flag(name: .long, help: "Answer every mutating route with 403 ACCESS_DENIED (env DATASOURCE_AGENT_READ_ONLY=1).")
    var readOnly = false

    @Option(name: .long, help: ArgumentHelp("Largest file an upload may send, in bytes (1073741824 = 1 GiB).", valueName: "N"))
    var maxUploadBytes: Int = 1 << 30

    @Option(name: .long, help: ArgumentHelp("Write HOST:PORT to this file once listening (useful with port 0).", valueName: "FILE"))
    var portFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "Origin put in download and export links, e.g. https://data.example.com (default http://HOST:PORT as bound).", valueName: "URL"))
    var publicURL: String?

    func validate() throws {
        guard rateLimit >= 1 else { throw ValidationError("--rate-limit must be at least 1") }
        guard maxUploadBytes >= 1 else { throw ValidationError("--max-upload-bytes must be at least 1") }
        _ = try Self.parseListen(listenValue)
    }

    var listenValue: String {
        listen ?? storeOptions.environment["DATASOURCE_AGENT_LISTEN"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1:8080"
    }

    var readOnlyValue: Bool {
        readOnly || ["1", "true", "yes"].contains(storeOptions.environment["DATASOURCE_AGENT_READ_ONLY"]?.lowercased() ?? "")
    }

    /// `HOST:PORT` or `[IPv6]:PORT`.
    static func parseListen(_ text: String) throws -> (host: String, port: Int) {
        let invalid = ValidationError("--listen takes HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (got \(text))")
        guard let colon = text.lastIndex(of: ":") else { throw invalid }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port), !host.isEmpty else { throw invalid }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// A test hook's duration (protocol/README.md, Test hooks): a positive whole number of ms.
    static func milliseconds(_ text: String?) -> Duration? {
        guard let text, let value = Int(text), value > 0 else { return nil }
        return .milliseconds(value)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func run() async throws {
        let logger = try storeOptions.bootstrapLogging()
        let (host, port) = try Self.parseListen(listenValue)
        if noAuth, !Self.isLoopback(host) {
            FileHandle.standardError.write(Data("""
                Error: --no-auth is accepted only with a loopback --listen address (127.0.0.1, ::1, localhost); \
                got \(host). Create a key instead: datasource-agent keys create --scope write\n
                """.utf8))
            throw ExitCode.validationFailure
        }
        PDFWords.isolatePDFReading()
        if let url = try storeOptions.postgresURL() {
            try await runOnPostgres(url, host: host, port: port, logger: logger)
            return
        }
        let root = storeOptions.storeURL()
        let local: LocalBackend
        do {
            local = try LocalBackend(root: root, logger: logger)
        } catch {
            logger.critical("cannot open the store at \(root.path): \(error)")
            throw ExitCode.failure
        }
        try refuseOpenAccess(keyCount: (try? local.listKeys())?.count ?? 0, store: root.path, logger: logger)
        let rest = restServer(backend: local, authority: local, backendName: "local", host: host, port: port, logger: logger)
        // Download and export links use the REST listener's origin.
        local.attachDownloadServer(rest)
        // Reverse order at shutdown: the REST listener drains its requests first, the watcher
        // stops, and unfinished processing is handed to process-pending last.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: ProcessingHandOff(backend: local, store: root, logger: logger)),
                .init(service: ChangeWatching(backend: local)),
                .init(service: rest, successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await Self.run(group)
    }
}

extension ServeHTTP {
    /// `serve-http --store postgres://…`: the REST face over a PostgreSQL store, beside any
    /// number of stdio agents on the same database; the same key rules as on a local store.
    func runOnPostgres(_ url: PostgresStoreURL, host: String, port: Int, logger: Logger) async throws {
        let postgres: PostgresBackend
        do {
            postgres = try await PostgresBackend.open(url, logger: logger)
        } catch {
            logger.critical("cannot open the PostgreSQL store \(url.redacted): \(String(reflecting: error))")
            throw ExitCode.failure
        }
        do {
            try refuseOpenAccess(keyCount: (try? await postgres.listKeys())?.count ?? 0, store: url.redacted, logger: logger)
        } catch {
            await postgres.shutDown()
            throw error
        }
        let rest = restServer(backend: postgres, authority: postgres, backendName: "postgres", host: host, port: port, logger: logger)
        postgres.attachDownloadServer(rest)
        // The store first, so it stops last: the REST listener drains its requests before
        // the leases are given up and the connections close.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: postgres), .init(service: rest, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await Self.run(group)
    }

    /// A store without keys would give everyone full access: refused unless `--no-auth`
    /// (accepted only on a loopback address, checked before).
    func refuseOpenAccess(keyCount: Int, store: String, logger: Logger) throws {
        if keyCount == 0, !noAuth {
            FileHandle.standardError.write(Data("""
                Error: the store \(store) has no API key, so serve-http would give everyone full access. \
                Create one (datasource-agent keys create --scope write --store \(store)), or pass --no-auth \
                on a loopback address.\n
                """.utf8))
            throw ExitCode.failure
        }
        if keyCount > 0, noAuth {
            logger.warning("--no-auth has no effect: the store has API keys, and every request must present one")
        }
    }

    /// The REST face over `backend`, configured from the options and the environment.
    func restServer(
        backend: any DataSourceBackend, authority: any DownloadAuthority, backendName: String, host: String, port: Int, logger: Logger
    ) -> RESTServer {
        let environment = storeOptions.environment
        let service = AgentService(
            backend: backend,
            configuration: ServiceConfiguration(
                version: DatasourceAgent.version, backendName: backendName, readOnly: readOnlyValue,
                debugMethods: environment["DATASOURCE_AGENT_DEBUG_METHODS"] == "1"),
            logger: logger)
        return RESTServer(
            service: service, authority: authority,
            configuration: RESTServer.Configuration(
                host: host, port: port, publicURL: publicURL, rateLimit: rateLimit, maxUploadBytes: maxUploadBytes,
                portFile: portFile, version: DatasourceAgent.version,
                eventsHeartbeat: Self.milliseconds(environment["DATASOURCE_AGENT_EVENTS_HEARTBEAT_MS"]) ?? .seconds(15),
                eventsTokenLifetime: Self.milliseconds(environment["DATASOURCE_AGENT_EVENTS_TOKEN_TTL_MS"]) ?? .seconds(60)),
            logger: logger)
    }

    static func run(_ group: ServiceGroup) async throws {
        do {
            try await group.run()
        } catch {
            FileHandle.standardError.write(Data("Error: serve-http stopped: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

struct PrintOpenAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi", abstract: "Print the OpenAPI 3.1 document of the REST face (protocol/openapi.json).")

    func run() throws {
        let document = AgentService.openAPIDocument(version: DatasourceAgent.version)
        // The committed protocol/openapi.json is exactly this output, and serve-http serves it.
        FileHandle.standardOutput.write(Data(document.prettyPrinted(indent: 2) + [0x0A]))
    }
}
