import DataSourceDomain
import Foundation
import JSONKit
import LocalStore
import Logging
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The store on PostgreSQL (SPEC §12): the catalog, the originals, the processing issues, the
/// status-change log and one typed table per data source, in the schema `datasource_agent` of
/// one database that any number of agents share. Uploads are processed by the agent that
/// received them, under a lease that another agent takes over when it expires; status changes
/// reach every agent through `LISTEN/NOTIFY`.
public final class PostgresBackend: DataSourceBackend, Service {
    public let url: PostgresStoreURL
    let client: PostgresClient
    let logger: Logger
    let catalog: CatalogQueries
    let secret: StoreSecret
    /// Who holds a lease: this process, uniquely among every agent on the database.
    let owner: String
    /// Where uploads wait for processing and rows are staged; removed when the agent ends.
    let scratch: URL
    let pathUploads: PathUploadPolicy
    let observers = ObserverList<StatusChange>()
    let jobs = ProcessingJobs(maxConcurrent: 2)
    let counts = FilterCounts()
    private let clientRun: Task<Void, Never>
    private let background = Mutex<[Task<Void, Never>]>([])
    let downloadServer = Mutex<(any DownloadOrigin)?>(nil)
    /// The API keys as last read, and when (see `grant(forKey:)`).
    let keyGate = KeyGate()
    static let maxInlineBytes = 64 * 1024 * 1024
    static let startTimeoutSeconds: UInt64 = 15

    struct Unreachable: Error, CustomStringConvertible {
        var description: String

        static func noAnswer(_ url: PostgresStoreURL) -> Unreachable {
            Unreachable(description: "no answer from \(url.host):\(url.port) within \(startTimeoutSeconds) s")
        }
    }
    static let chunkBytes = 1 << 20
    /// A lease not renewed for this long is taken over by another agent.
    static let leaseSeconds: Int64 = 15
    static let heartbeatSeconds: UInt64 = 3

    /// Connects, creates or migrates the schema, and starts listening for status changes and
    /// taking over processing whose lease has expired.
    /// `serving: false` (the `keys` commands): no listener, no leases, no takeover.
    public static func open(_ url: PostgresStoreURL, logger: Logger, allowedPaths: [String] = [], serving: Bool = true) async throws -> PostgresBackend {
        // The schema and the secret come over a first connection of its own (see `connect`).
        let connection = try await connect(url, logger: logger)
        let secretBytes: [UInt8]
        do {
            secretBytes = try await withDeadline(seconds: Self.startTimeoutSeconds) {
                try await Schema.migrate(connection, logger: logger)
                var bytes: [UInt8] = []
                for try await buffer in try await connection.query("SELECT secret FROM datasource_agent.store_secret WHERE id = 1", logger: logger)
                    .decode(ByteBuffer.self)
                {
                    bytes = Array(buffer.readableBytesView)
                }
                return bytes
            }
            try? await connection.close()
        } catch {
            try? await connection.close()
            throw error is DeadlinePassed ? Unreachable.noAnswer(url) : error
        }
        guard secretBytes.count >= 16 else { throw DataSourceError(.storageError, details: ["reason": "the store secret is missing"]) }
        let client = PostgresClient(configuration: url.clientConfiguration(), backgroundLogger: logger)
        // The pool warns about any request made before its `run()` began.
        let (running, began) = AsyncStream<Void>.makeStream()
        let run = Task {
            began.finish()
            await client.run()
        }
        for await _ in running {}
        do {
            let backend = try PostgresBackend(url: url, client: client, run: run, secret: StoreSecret(bytes: secretBytes), logger: logger, allowedPaths: allowedPaths)
            if serving { try await backend.start() }
            return backend
        } catch {
            run.cancel()
            throw error
        }
    }

    /// The pool retries connecting forever and keeps the reason to itself, so the first
    /// connection is made alone, to say why a store cannot be used: refused, unknown host, no
    /// such database or role, a password or TLS refused, in the server's or TLS's words.
    static func connect(_ url: PostgresStoreURL, logger: Logger) async throws -> PostgresConnection {
        let configuration = try url.connectionConfiguration()
        do {
            return try await withDeadline(seconds: startTimeoutSeconds) {
                try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            }
        } catch is DeadlinePassed {
            throw Unreachable.noAnswer(url)
        } catch {
            throw Unreachable(description: "cannot connect to \(url.host):\(url.port): \(reason(error))")
        }
    }

    /// What a failed connection says, without the password (PSQLError's own description hides
    /// everything, the server's message included).
    static func reason(_ error: any Error) -> String {
        guard let psql = error as? PSQLError else { return String(describing: error) }
        if let message = psql.serverInfo?[.message] {
            return "the server says: \(message)"
        }
        if let underlying = psql.underlying {
            if let ssl = underlying as? NIOSSLError, case .handshakeFailed = ssl {
                return "the TLS handshake failed (\(ssl)); with sslmode=verify-full the server's certificate must be trusted by this machine and name the host in the URL"
            }
            return String(describing: underlying)
        }
        switch psql.code {
        case .sslUnsupported: return "the server does not offer TLS, which sslmode=require and verify-full need"
        default: return "\(psql.code)"
        }
    }

    private init(url: PostgresStoreURL, client: PostgresClient, run: Task<Void, Never>, secret: StoreSecret, logger: Logger, allowedPaths: [String]) throws {
        self.url = url
        self.client = client
        self.clientRun = run
        self.secret = secret
        self.logger = logger
        catalog = CatalogQueries(client: client, logger: logger)
        owner = "\(ProcessInfo.processInfo.hostName):\(getpid()):\(UUID().uuidString.lowercased())"
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("datasource-agent-pg-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        pathUploads = PathUploadPolicy(storeRoot: scratch, allowedDirectories: allowedPaths)
    }

    private func start() async throws {
        let listener = ChangeListener(client: client, logger: logger, startAfter: try await latestChangeSequence()) { [observers] change in
            observers.emit(change)
        }
        let listening = Task { await listener.run() }
        let leases = Task { [self] in await watchLeases() }
        background.withLock { $0 = [listening, leases] }
    }

    /// Runs until the group shuts down, then stops the listener and the lease keeper, gives up
    /// the leases of unfinished work (another agent takes it over at once) and disconnects.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutDown()
    }

    public func shutDown() async {
        jobs.cancelAll()
        for task in background.withLock({ $0 }) { task.cancel() }
        // The cancelled loads fail their COPY and roll back before the pool closes their
        // connections: postgres-nio 1.33 traps ("Invalid query state machine action in state:
        // .closing, action: wait") when a connection is closed in the middle of a COPY.
        await jobs.waitUntilNone(seconds: 5)
        // Bounded: a database that is gone must not keep the process from ending (the leases
        // then expire on their own).
        _ = try? await withDeadline(seconds: 5) { [client, owner, logger] in
            try await client.query(
                "UPDATE datasource_agent.datasources SET lease_owner = NULL, lease_heartbeat_at = 0 WHERE status = 'processing' AND lease_owner = \(owner)",
                logger: logger)
        }
        clientRun.cancel()
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: Reading

    public func list(_ query: ListQuery) async throws -> ListPage {
        try await storing { try await catalog.list(query) }
    }

    public func details(of id: DataSourceID, maxAge: Int?) async throws -> DataSourceDetails {
        guard var details = try await storing({ try await catalog.details(id) }) else { throw DataSourceError.notFound(id.rawValue) }
        if details.summary.status == .processing, let rows = jobs.rowsSoFar(id) { details.rowCount = rows }
        return details
    }

    /// This agent's own estimate while it processes the source, else the one the processing
    /// agent last wrote with its lease (`renewLeases`).
    func estimatedCompletion(of record: CatalogRecord) -> Timestamp? {
        jobs.estimatedCompletion(record.id) ?? record.estimatedCompletion.map(Timestamp.init(secondsSince1970:))
    }

    public func data(_ query: DataQuery) async throws -> DataPage {
        guard let record = try await storing({ try await catalog.record(query.datasourceId) }) else {
            throw DataSourceError.notFound(query.datasourceId.rawValue)
        }
        switch record.status {
        case .processing:
            throw DataSourceError.processingInProgress(
                status: .processing, estimatedCompletion: estimatedCompletion(of: record))
        case .failed:
            throw DataSourceError.processingFailed(id: record.id, message: record.errorMessage ?? "processing failed")
        case .completed:
            let page = RowPageQuery(query: query, columns: record.columns ?? [], rowCount: record.rowCount ?? 0, secret: secret, counts: counts)
            do {
                return try await storing { try await page.run(client, logger: logger) }
            } catch let error as DataSourceError where error.code == .storageError {
                // Another agent may have deleted the source (and dropped its table) since the
                // catalog was read: that is a source not found, not a store that failed.
                if try await storing({ try await catalog.record(query.datasourceId) }) == nil {
                    throw DataSourceError.notFound(query.datasourceId.rawValue)
                }
                throw error
            }
        }
    }

    /// Resolves the sources the statement names (quoted ids, or aliases from `sources`) to
    /// their tables and columns, then runs it read-only (`PostgresSQLQuery`).
    public func query(_ request: SQLQuery) async throws -> SQLQueryResult {
        // Only an id quoted exactly as it is written (lower case) names a source's table here.
        let named = try request.namedSources(
            quotedIDs: PostgresSQLQuery.quotedNames(in: request.sql).compactMap { q in DataSourceID(q).flatMap { $0.rawValue == q ? (q, $0) : nil } })
        var sources: [PostgresSQLQuery.Source] = []
        for (id, names) in named {
            guard let record = try await storing({ try await catalog.record(id) }) else { throw SQLQuery.invalid("no data source \(id.rawValue)") }
            switch record.status {
            case .processing:
                throw DataSourceError.processingInProgress(
                    status: .processing, estimatedCompletion: estimatedCompletion(of: record))
            case .failed:
                throw DataSourceError.processingFailed(id: id, message: record.errorMessage ?? "processing failed")
            case .completed:
                sources.append(PostgresSQLQuery.Source(id: id, names: names, columns: record.columns ?? []))
            }
        }
        let statement = PostgresSQLQuery(request: request, sources: sources)
        return try await storing { try await statement.run(client, logger: logger) }
    }


    // MARK: Deleting

    /// The catalog row (its original chunks and issues go with it by cascade), the typed table
    /// and the change-log entries go in one transaction; processing of it, here or in another
    /// agent, stops at its next heartbeat.
    public func delete(_ id: DataSourceID) async throws -> DeleteReceipt {
        jobs.cancel(id)
        let deleted = try await storing {
            try await client.withTransaction(logger: logger) { connection -> Bool in
                var found = false
                for try await _ in try await connection.query("DELETE FROM datasource_agent.datasources WHERE id = \(id.rawValue) RETURNING id", logger: logger) {
                    found = true
                }
                guard found else { return false }
                try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(RowTable.name(id))"), logger: logger)
                try await connection.query("DELETE FROM datasource_agent.status_changes WHERE datasource_id = \(id.rawValue)", logger: logger)
                return true
            }
        }
        guard deleted else { throw DataSourceError.notFound(id.rawValue) }
        counts.forget(id)
        return DeleteReceipt(datasourceId: id, deletedAt: .now())
    }

    // MARK: Uploading

    /// The original is stored in the database (1 MiB `bytea` chunks) in the same transaction
    /// that inserts the catalog row under this agent's lease; the answer goes back at once and
    /// processing starts from the local copy.
    public func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary {
        let id = DataSourceID.random()
        let local = scratch.appendingPathComponent(id.rawValue + ".original")
        let fileName: String
        switch request.source {
        case .path(let path):
            fileName = try await offCooperativePool { [pathUploads] in try pathUploads.copy(from: path, to: local) }
        case .inline(let name, let bytes):
            guard bytes.count <= Self.maxInlineBytes else {
                throw DataSourceError.invalidParameter(
                    "content", value: nil, reason: "inline content is limited to 64 MiB decoded; upload by path instead",
                    extra: ["max": .int(Int64(Self.maxInlineBytes)), "size": .int(Int64(bytes.count))])
            }
            fileName = name
            guard FileManager.default.createFile(atPath: local.path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
                throw DataSourceError(.storageError, details: ["reason": "cannot stage the upload"])
            }
        }
        do {
            let handle = try FileHandle(forReadingFrom: local)
            defer { try? handle.close() }
            let fileSize = Int64((try? FileManager.default.attributesOfItem(atPath: local.path)[.size] as? Int64) ?? 0)
            let contentType: String
            if let given = request.contentType?.trimmingCharacters(in: .whitespaces), !given.isEmpty {
                contentType = given.lowercased()
            } else {
                let prefix = Array(try handle.read(upToCount: 8192) ?? Data())
                contentType = SharedIngestion.guessContentType(fileName: fileName, prefix: prefix)
                try handle.seek(toOffset: 0)
            }
            let now = Timestamp.now().secondsSince1970
            let options = request.options
            let storingStarted = DispatchTime.now()
            // The original is stored while the pipeline already reads the local copy: the
            // processing publishes nothing until this transaction has committed.
            let storingTask = Task { [self] () -> CatalogRecord in
                try await storing {
                    try await client.withTransaction(logger: logger) { [owner, catalog, logger] connection -> CatalogRecord in
                        try await connection.query("""
                            INSERT INTO datasource_agent.datasources (id, file_name, content_type, file_size, status, uploaded_at, options_json, lease_owner, lease_heartbeat_at)
                            VALUES (\(id.rawValue), \(fileName), \(contentType), \(fileSize), 'processing', \(now), \(options.catalogJSON), \(owner), \(now))
                            """, logger: logger)
                        var chunk: Int32 = 0
                        while let data = try handle.read(upToCount: Self.chunkBytes), !data.isEmpty {
                            try await connection.query(
                                "INSERT INTO datasource_agent.originals (datasource_id, chunk, bytes) VALUES (\(id.rawValue), \(chunk), \(ByteBuffer(bytes: data)))",
                                logger: logger)
                            chunk += 1
                        }
                        guard let record = try await catalog.record(id, on: connection) else {
                            throw DataSourceError(.storageError, details: ["reason": "the upload was not recorded"])
                        }
                        return record
                    }
                }
            }
            let stored = Task<Void, any Error> { _ = try await storingTask.value }
            startProcessing(
                ProcessingInput(id: id, contentType: contentType, options: options, fileSize: fileSize), original: local, stored: stored,
                progress: progress)
            let record: CatalogRecord
            do {
                record = try await storingTask.value
            } catch {
                jobs.cancel(id)
                throw error
            }
            jobs.markStored(id)
            logger.info("\(id): original (\(fileSize) bytes) stored in \(Self.seconds(storingStarted, .now())) s")
            return record.summary
        } catch {
            try? FileManager.default.removeItem(at: local)
            throw error
        }
    }

    // MARK: Status changes

    public func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken {
        observers.add(observer)
    }

    public func removeObserver(_ token: ObserverToken) {
        observers.remove(token)
    }

    func latestChangeSequence() async throws -> Int64 {
        var latest: Int64 = 0
        for try await value in try await client.query("SELECT COALESCE(MAX(sequence), 0) FROM datasource_agent.status_changes", logger: logger).decode(Int64.self) {
            latest = value
        }
        return latest
    }

    /// Runs `body`, turning what the database or the connection throws into STORAGE_ERROR in
    /// words (never SQL); the Claro errors the store throws itself pass through.
    func storing<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DataSourceError {
            throw error
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError as? DataSourceError { throw inner }
            logger.error("PostgreSQL store: \(String(reflecting: error))")
            throw DataSourceError(.storageError, details: ["reason": "the PostgreSQL store could not be read or written"])
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.error("PostgreSQL store: \(String(reflecting: error))")
            throw DataSourceError(.storageError, details: ["reason": "the PostgreSQL store could not be read or written"])
        }
    }
}

/// Runs blocking work (file copies, the staging pipeline) on a thread of its own, never on a
/// thread of the cooperative pool.
func offCooperativePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 4 << 20
        thread.start()
    }
}
