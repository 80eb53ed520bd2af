import DataSourceDomain
import Dispatch
import Foundation
import JSONKit
import LocalStore
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The processing this agent runs: at most `maxConcurrent` at once, each with its
/// cancellation flag and progress.
final class ProcessingJobs: Sendable {
    final class Job: Sendable {
        let id: DataSourceID
        let fileSize: Int64
        let startedAt = Date()
        private let state: Mutex<(cancelled: Bool, rows: Int, bytesDone: Int64, stored: Bool)>
        init(id: DataSourceID, fileSize: Int64, stored: Bool) {
            self.id = id
            self.fileSize = fileSize
            state = Mutex((false, 0, 0, stored))
        }
        var isCancelled: Bool { state.withLock { $0.cancelled } }
        /// Whether the source's catalog row is committed (an upload is processed while its
        /// original is still being stored, and has no row whose lease could be renewed yet).
        var isStored: Bool { state.withLock { $0.stored } }
        func markStored() { state.withLock { $0.stored = true } }
        func cancel() { state.withLock { $0.cancelled = true } }
        var rows: Int { state.withLock { $0.rows } }
        func update(bytesDone: Int64, rows: Int) { state.withLock { $0.bytesDone = bytesDone; $0.rows = rows } }
        var estimatedCompletion: Timestamp? {
            Timestamp.estimatedCompletion(startedAt: startedAt, bytesDone: state.withLock { $0.bytesDone }, totalBytes: fileSize)
        }
    }

    private let slots: DispatchSemaphore
    private let state = Mutex<[DataSourceID: Job]>([:])

    init(maxConcurrent: Int) { slots = DispatchSemaphore(value: maxConcurrent) }

    /// The job for `id`, or nil when this agent is processing it already.
    func begin(_ id: DataSourceID, fileSize: Int64, stored: Bool) -> Job? {
        state.withLock { jobs in
            guard jobs[id] == nil else { return nil }
            let job = Job(id: id, fileSize: fileSize, stored: stored)
            jobs[id] = job
            return job
        }
    }

    func end(_ job: Job) { state.withLock { if $0[job.id] === job { $0[job.id] = nil } } }

    /// Waits until every job has ended, at most `seconds`.
    func waitUntilNone(seconds: Double) async {
        let deadline = DispatchTime.now() + seconds
        while !state.withLock({ $0.isEmpty }), DispatchTime.now() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }
    func rowsSoFar(_ id: DataSourceID) -> Int? { state.withLock { $0[id]?.rows } }
    func cancel(_ id: DataSourceID) { state.withLock { $0[id]?.cancel() } }
    func cancelAll() { state.withLock { jobs in jobs.values.forEach { $0.cancel() } } }
    func markStored(_ id: DataSourceID) { state.withLock { $0[id]?.markStored() } }
    func estimatedCompletion(_ id: DataSourceID) -> Timestamp? { state.withLock { $0[id]?.estimatedCompletion } }
    /// The sources being processed whose catalog rows are committed: the leases to renew.
    var running: [DataSourceID] { state.withLock { $0.values.filter(\.isStored).map(\.id) } }
    /// Waits (on a processing thread) for one of the slots.
    func acquireSlot() { slots.wait() }
    func releaseSlot() { slots.signal() }
}

extension PostgresBackend {
    /// What processing reads of a source's catalog row.
    struct ProcessingInput: Sendable {
        var id: DataSourceID
        var contentType: String
        var options: ParseOptions?
        var fileSize: Int64

        init(id: DataSourceID, contentType: String, options: ParseOptions?, fileSize: Int64) {
            self.id = id
            self.contentType = contentType
            self.options = options
            self.fileSize = fileSize
        }

        init(_ record: CatalogRecord) {
            self.init(id: record.id, contentType: record.contentType, options: record.options, fileSize: record.fileSize)
        }
    }

    /// Processes a source this agent holds the lease of, from the local copy of its original.
    /// `stored`: an upload's storing transaction, still running beside the processing (which
    /// publishes nothing until it has committed, and nothing at all if it fails); the
    /// uploader marks the job stored when it commits.
    func startProcessing(_ input: ProcessingInput, original: URL, stored: Task<Void, any Error>? = nil, progress: ProgressHandler?) {
        guard let job = jobs.begin(input.id, fileSize: input.fileSize, stored: stored == nil) else { return }
        Task { [self] in
            defer {
                jobs.end(job)
                try? FileManager.default.removeItem(at: original)
            }
            await process(input, original: original, stored: stored, job: job, progress: progress)
        }
    }

    /// The `COPY` format of the rows (`protocol/postgres.md` says which measured faster);
    /// `DATASOURCE_AGENT_COPY_FORMAT=text|binary` chooses the other one to measure it again.
    static let copyFormat = ProcessInfo.processInfo.environment["DATASOURCE_AGENT_COPY_FORMAT"].flatMap(CopyFormat.init(rawValue:)) ?? .binary

    private struct Lost: Error {}

    /// How a load that publishes nothing ends (its transaction is rolled back).
    private enum Unpublished: Error {
        /// The file cannot be processed: the source fails with this message.
        case failed(String)
        /// PostgreSQL refused the rows (a NUL in text).
        case notStored(any Error)
        case cancelled
    }

    /// Runs the shared pipeline (types, cleaning and issues exactly as on a local store) with
    /// its rows streamed as `COPY … FROM STDIN` into the source's typed table, and publishes
    /// them, all in one transaction: the table, the catalog row moved out of `processing`
    /// (only while this agent still holds the lease), the issues, the change-log entry, and a
    /// `NOTIFY` sent on commit. Nothing of a load that fails or is abandoned is ever visible.
    func process(_ record: ProcessingInput, original: URL, stored: Task<Void, any Error>?, job: ProcessingJobs.Job, progress: ProgressHandler?) async {
        let id = record.id
        progress?(0, "Processing")
        // A slot first, then a connection: a queued load holds no connection of the pool.
        _ = try? await offCooperativePool { [jobs] in jobs.acquireSlot() }
        defer { jobs.releaseSlot() }
        let started = DispatchTime.now()
        do {
            do {
                let outcome = try await loadAndPublish(record, original: original, stored: stored, job: job, progress: progress)
                logger.info("processed \(id): \(outcome.rowCount) rows loaded (COPY) and published in \(Self.seconds(started, .now())) s")
                RowPageQuery.ensureRowIndex(client, id: id, logger: logger)
            } catch Unpublished.cancelled {
                return
            } catch Unpublished.notStored(let error) where ConnectionLoss.isConnectionLoss(error) {
                lostConnection(id, error)
                return
            } catch where ConnectionLoss.isConnectionLoss(error) {
                lostConnection(id, error)
                return
            } catch Unpublished.failed(let message) {
                logger.info("processing \(id) failed: \(message)")
                try await committed(stored)
                try await markFailed(id, message: message)
            } catch Unpublished.notStored(let error) {
                try await committed(stored)
                // Rows PostgreSQL refuses (a NUL in text, more columns than a table holds) fail
                // the source, in words.
                logger.error("storing the rows of \(id) failed: \(String(reflecting: error))")
                try await markFailed(id, message: Self.notStoredMessage(error))
            }
        } catch is Lost {
            logger.info("processing \(id) ended without publishing: the source was deleted or its lease taken over")
        } catch {
            if job.isCancelled { return }
            logger.error("could not record the outcome of processing \(id): \(String(reflecting: error))")
        }
        progress?(1, "Done")
    }

    /// Why the rows could not be stored, with PostgreSQL's own words when they are about the
    /// data or a limit of PostgreSQL's (SQLSTATE classes 22 and 54: "tables can have at most
    /// 1600 columns", "row is too big", an invalid byte sequence), which name nothing internal.
    static func notStoredMessage(_ error: any Error) -> String {
        let plain = "the rows could not be stored in PostgreSQL"
        guard let psql = (error as? PostgresTransactionError)?.closureError as? PSQLError ?? error as? PSQLError,
              let state = psql.serverInfo?[.sqlState], state.hasPrefix("22") || state.hasPrefix("54"),
              let message = psql.serverInfo?[.message]
        else { return plain }
        return "\(plain): \(message)"
    }

    /// Not the rows' fault (a server restart, a network cut): the lease lapses and this agent
    /// or another loads the source again.
    private func lostConnection(_ id: DataSourceID, _ error: any Error) {
        logger.warning("loading \(id) was interrupted, the connection to PostgreSQL was lost; it is processed again when its lease lapses: \(String(reflecting: error))")
    }

    static func seconds(_ from: DispatchTime, _ to: DispatchTime) -> String {
        String(format: "%.2f", Double(to.uptimeNanoseconds - from.uptimeNanoseconds) / 1e9)
    }

    private func markFailed(_ id: DataSourceID, message: String) async throws {
        try await withProcessingTransaction { [self, logger] connection in
            try await holdLease(id, on: connection)
            try await connection.query("""
                UPDATE datasource_agent.datasources SET status = 'failed', processed_at = \(Timestamp.now().secondsSince1970),
                error_message = \(message), row_count = 0, cleaned_rows = 0, error_count = 1, warning_count = 0
                WHERE id = \(id.rawValue)
                """, logger: logger)
            try await close(id, as: .failed, on: connection)
        }
    }

    /// The pipeline on a thread of its own, its insert stage handing the encoded rows to this
    /// transaction's `COPY` (`CopyHandOver`, bounded); then the publishing statements.
    private func loadAndPublish(
        _ record: ProcessingInput, original: URL, stored: Task<Void, any Error>?, job: ProcessingJobs.Job, progress: ProgressHandler?
    ) async throws -> SharedIngestion.Outcome {
        let id = record.id
        let contentType = record.contentType
        let options = record.options ?? ParseOptions()
        let fileSize = record.fileSize
        let scratch = self.scratch
        let started = DispatchTime.now()
        let handOver = CopyHandOver()
        // A transaction abandoned on a closed connection (`ConnectionLoss.racingClose`) must
        // not leave the pipeline's thread waiting to hand rows to a COPY that is gone.
        defer { handOver.stop() }
        return try await withProcessingTransaction { [self, logger] connection in
            async let ingested = offCooperativePool { () -> Result<SharedIngestion.Outcome, any Error> in
                defer { handOver.close() }
                return Result {
                    try SharedIngestion.process(
                        source: original, contentType: contentType, options: options, into: handOver, format: Self.copyFormat,
                        workDirectory: scratch,
                        isCancelled: { job.isCancelled },
                        progress: { bytes, rows in
                            job.update(bytesDone: bytes, rows: rows)
                            if fileSize > 0 { progress?(min(0.9, 0.9 * Double(bytes) / Double(fileSize)), "\(rows) rows") }
                        })
                }
            }
            var copied = false
            var copyError: (any Error)?
            do {
                copied = try await RowCopy.run(handOver, into: id, format: Self.copyFormat, connection: connection,
                    logger: logger)
            } catch {
                copyError = error
                handOver.stop()
            }
            let outcome: SharedIngestion.Outcome
            switch try await ingested {
            case _ where job.isCancelled: throw Unpublished.cancelled
            case .success(let loaded):
                if let copyError { throw Unpublished.notStored(copyError) }
                guard copied else { throw Unpublished.notStored(CopyHandOver.Stopped()) }
                outcome = loaded
            case .failure(is SharedIngestion.Cancelled): throw Unpublished.cancelled
            case .failure(let failure as SharedIngestion.Failure): throw Unpublished.failed(failure.message)
            case .failure(let error):
                if let copyError { throw Unpublished.notStored(copyError) }
                throw Unpublished.failed("processing failed: \(error)")
            }
            progress?(0.9, "Publishing \(outcome.rowCount) rows")
            let publishing = DispatchTime.now()
            try await committed(stored)
            try await holdLease(id, on: connection)
            try await publish(id, outcome: outcome, on: connection)
            try await close(id, as: .completed, on: connection)
            logger.info("\(id): \(outcome.rowCount) rows read, converted and copied in \(Self.seconds(started, publishing)) s; catalog in \(Self.seconds(publishing, .now())) s")
            return outcome
        }
    }

    /// The statements after the rows' `COPY`: the reader's grant, the issues, the catalog.
    /// The index on `r` is built after the commit (`RowPageQuery.ensureRowIndex`): the rows
    /// are numbered 1…n by the load, and every page is answered without it meanwhile.
    private func publish(_ id: DataSourceID, outcome: SharedIngestion.Outcome, on connection: PostgresConnection) async throws {
        let table = RowTable.name(id)
        // What `datasources/query` may read (when the store has its reader role).
        try await connection.query(PostgresQuery(unsafeSQL: """
            DO $$ BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = '\(PostgresSQLQuery.readerRole)') THEN
                    GRANT SELECT ON \(table) TO \(PostgresSQLQuery.readerRole);
                END IF;
            END $$
            """), logger: logger)
        for (position, issue) in outcome.issues.enumerated() {
            try await connection.query("""
                INSERT INTO datasource_agent.processing_issues (datasource_id, position, severity, line, column_name, kind, reason)
                VALUES (\(id.rawValue), \(position), \(issue.severity.rawValue), \(Int64(issue.line)), \(issue.column), \(issue.kind), \(issue.reason))
                """, logger: logger)
        }
        try await connection.query("""
            UPDATE datasource_agent.datasources SET status = 'completed', processed_at = \(Timestamp.now().secondsSince1970),
            row_count = \(Int64(outcome.rowCount)), cleaned_rows = \(Int64(outcome.stats.cleanedRows)),
            error_count = \(Int64(outcome.stats.errors)), warning_count = \(Int64(outcome.stats.warnings)),
            columns_json = \(outcome.columns.catalogJSON), sheets_json = \(outcome.sheets.map(\.catalogJSON))
            WHERE id = \(id.rawValue)
            """, logger: logger)
    }

    /// `body` in one transaction on one connection of the pool; `Lost` and `Unpublished`
    /// leave it as themselves (after the rollback), and `ConnectionLoss.Closed` comes as soon
    /// as the connection closes under it (postgres-nio would otherwise wait for it forever:
    /// see `racingClose`).
    private func withProcessingTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await client.withConnection { [logger] connection in
            do {
                return try await ConnectionLoss.racingClose(of: connection) {
                    try await connection.withTransaction(logger: logger) { connection in try await body(connection) }
                }
            } catch let error as PostgresTransactionError {
                if let closureError = error.closureError, closureError is Lost || closureError is Unpublished { throw closureError }
                throw error
            }
        }
    }

    /// Waits for an upload's storing transaction; `Lost` when it failed (there is no source).
    private func committed(_ stored: Task<Void, any Error>?) async throws {
        do {
            try await stored?.value
        } catch {
            throw Lost()
        }
    }

    /// Locks the catalog row (so a delete or a takeover cannot interleave with what follows)
    /// and throws `Lost` unless the source is still `processing` under this agent's lease.
    private func holdLease(_ id: DataSourceID, on connection: PostgresConnection) async throws {
        var holds = false
        for try await _ in try await connection.query("""
            SELECT 1 FROM datasource_agent.datasources
            WHERE id = \(id.rawValue) AND status = 'processing' AND lease_owner = \(owner) FOR UPDATE
            """, logger: logger) { holds = true }
        guard holds else { throw Lost() }
    }

    /// The end of processing, with the row moved to `status`: the lease given up, the change
    /// logged, every agent notified on commit.
    private func close(_ id: DataSourceID, as status: DataSourceStatus, on connection: PostgresConnection) async throws {
        try await connection.query("""
            UPDATE datasource_agent.datasources SET lease_owner = NULL, lease_heartbeat_at = NULL, estimated_completion = NULL
            WHERE id = \(id.rawValue)
            """, logger: logger)
        let now = Timestamp.now().secondsSince1970
        try await connection.query("""
            INSERT INTO datasource_agent.status_changes (datasource_id, previous_status, status, committed_at)
            VALUES (\(id.rawValue), 'processing', \(status.rawValue), \(now))
            """, logger: logger)
        // The log only has to outlive the time a listener takes to reconnect.
        try await connection.query("DELETE FROM datasource_agent.status_changes WHERE committed_at < \(now - 3600)", logger: logger)
        try await connection.query("SELECT pg_notify(\(Schema.notificationChannel), \(id.rawValue))", logger: logger)
    }

    // MARK: Leases

    /// Every few seconds: renews the leases of the sources this agent is processing (a
    /// source deleted meanwhile, or taken over, stops its processing here), and takes over
    /// sources whose lease expired (their agent died), processing them from the original in
    /// the database.
    func watchLeases() async {
        while !Task.isCancelled {
            do {
                try await renewLeases()
                try await takeOverExpired()
            } catch is CancellationError {
                return
            } catch where Task.isCancelled {
                // Shutting down: the pool cancels the round's requests.
                return
            } catch {
                logger.warning("PostgreSQL store: leases not renewed this round: \(String(reflecting: error))")
            }
            try? await Task.sleep(nanoseconds: Self.heartbeatSeconds * 1_000_000_000)
        }
    }

    private func renewLeases() async throws {
        let running = jobs.running
        guard !running.isEmpty else { return }
        var held = Set<String>()
        let now = Timestamp.now().secondsSince1970
        // Each heartbeat carries the job's estimate, which other agents answer with (0: none yet).
        let estimates = running.map { jobs.estimatedCompletion($0)?.secondsSince1970 ?? 0 }
        for try await id in try await client.query("""
            UPDATE datasource_agent.datasources AS d SET lease_heartbeat_at = \(now), estimated_completion = NULLIF(e.estimate, 0)
            FROM unnest(\(running.map(\.rawValue))::text[], \(estimates)::bigint[]) AS e(id, estimate)
            WHERE d.id = e.id AND d.status = 'processing' AND d.lease_owner = \(owner)
            RETURNING d.id
            """, logger: logger).decode(String.self) { held.insert(id) }
        for id in running where !held.contains(id.rawValue) { jobs.cancel(id) }
    }

    /// `process-pending` on a PostgreSQL store: takes over every source whose lease expired
    /// or was given up, renewing the leases while it processes them, until none is left.
    /// A round that cannot reach the database for a minute ends it: the pool would wait for
    /// the server forever, and another agent (or the next one to start) takes the work over.
    public func processPending() async {
        while !Task.isCancelled {
            do {
                let claimed = try await withDeadline(seconds: 60) { [self] in
                    try await renewLeases()
                    return try await takeOverExpired()
                }
                logger.debug("process-pending: claimed \(claimed), processing \(jobs.running.count)")
                if claimed == 0, jobs.running.isEmpty { return }
            } catch {
                logger.warning("process-pending: giving up, the database did not answer: \(String(reflecting: error))")
                jobs.cancelAll()
                return
            }
            try? await Task.sleep(nanoseconds: 500_000_000)
        }
    }

    /// Whether this agent is processing an accepted upload (to hand on when it leaves).
    public var hasPendingProcessing: Bool { !jobs.running.isEmpty }

    @discardableResult
    private func takeOverExpired() async throws -> Int {
        let now = Timestamp.now().secondsSince1970
        var claimed: [CatalogRecord] = []
        for try await row in try await client.query("""
            UPDATE datasource_agent.datasources SET lease_owner = \(owner), lease_heartbeat_at = \(now)
            WHERE id IN (
                SELECT id FROM datasource_agent.datasources
                WHERE status = 'processing' AND (lease_heartbeat_at IS NULL OR lease_heartbeat_at < \(now - Self.leaseSeconds))
                ORDER BY uploaded_at LIMIT 2 FOR UPDATE SKIP LOCKED)
            RETURNING \(unescaped: CatalogRecord.selection)
            """, logger: logger) { claimed.append(try CatalogRecord(row: row)) }
        for record in claimed {
            logger.info("taking over the processing of \(record.id), whose lease expired")
            let local = scratch.appendingPathComponent(record.id.rawValue + ".original")
            try await fetchOriginal(record.id, to: local)
            startProcessing(ProcessingInput(record), original: local, progress: nil)
        }
        return claimed.count
    }

    /// Writes a source's original from its chunks in the database to a local file, one chunk at a time.
    func fetchOriginal(_ id: DataSourceID, to local: URL) async throws {
        guard FileManager.default.createFile(atPath: local.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw DataSourceError(.storageError, details: ["reason": "cannot stage the original"])
        }
        let handle = try FileHandle(forWritingTo: local)
        defer { try? handle.close() }
        var chunk: Int32 = 0
        while true {
            var bytes: ByteBuffer?
            for try await buffer in try await client.query(
                "SELECT bytes FROM datasource_agent.originals WHERE datasource_id = \(id.rawValue) AND chunk = \(chunk)", logger: logger
            ).decode(ByteBuffer.self) { bytes = buffer }
            guard let bytes else { return }
            try handle.write(contentsOf: Data(bytes.readableBytesView))
            chunk += 1
        }
    }
}

struct DeadlinePassed: Error, CustomStringConvertible {
    var seconds: UInt64
    var description: String { "no answer within \(seconds) s" }
}

/// Runs `body`, or throws `DeadlinePassed` when it has not finished within `seconds` (and cancels it).
func withDeadline<T: Sendable>(seconds: UInt64, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: seconds * 1_000_000_000)
            throw DeadlinePassed(seconds: seconds)
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw DeadlinePassed(seconds: seconds) }
        return first
    }
}
