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
        private let state = Mutex<(cancelled: Bool, rows: Int)>((false, 0))
        init(id: DataSourceID) { self.id = id }
        var isCancelled: Bool { state.withLock { $0.cancelled } }
        func cancel() { state.withLock { $0.cancelled = true } }
        var rows: Int { state.withLock { $0.rows } }
        func update(rows: Int) { state.withLock { $0.rows = rows } }
    }

    private let slots: DispatchSemaphore
    private let state = Mutex<[DataSourceID: Job]>([:])

    init(maxConcurrent: Int) { slots = DispatchSemaphore(value: maxConcurrent) }

    /// The job for `id`, or nil when this agent is processing it already.
    func begin(_ id: DataSourceID) -> Job? {
        state.withLock { jobs in
            guard jobs[id] == nil else { return nil }
            let job = Job(id: id)
            jobs[id] = job
            return job
        }
    }

    func end(_ job: Job) { state.withLock { if $0[job.id] === job { $0[job.id] = nil } } }
    func rowsSoFar(_ id: DataSourceID) -> Int? { state.withLock { $0[id]?.rows } }
    func cancel(_ id: DataSourceID) { state.withLock { $0[id]?.cancel() } }
    func cancelAll() { state.withLock { jobs in jobs.values.forEach { $0.cancel() } } }
    var running: [DataSourceID] { state.withLock { Array($0.keys) } }
    /// Waits (on a processing thread) for one of the slots.
    func acquireSlot() { slots.wait() }
    func releaseSlot() { slots.signal() }
}

extension PostgresBackend {
    /// Processes a source this agent holds the lease of, from the local copy of its original.
    func startProcessing(_ record: CatalogRecord, original: URL, progress: ProgressHandler?) {
        guard let job = jobs.begin(record.id) else { return }
        Task { [self] in
            defer {
                jobs.end(job)
                try? FileManager.default.removeItem(at: original)
            }
            await process(record, original: original, job: job, progress: progress)
        }
    }

    private struct Lost: Error {}

    /// Stages the rows with the shared pipeline (types, cleaning and issues exactly as on a
    /// local store), then publishes them in one transaction: the typed table created and
    /// filled by `COPY … FROM STDIN`, the catalog row moved out of `processing` (only while
    /// this agent still holds the lease), the issues and the change-log entry written, and a
    /// `NOTIFY` sent on commit. Nothing of a load that fails or is abandoned is ever visible.
    func process(_ record: CatalogRecord, original: URL, job: ProcessingJobs.Job, progress: ProgressHandler?) async {
        let id = record.id
        let staging = scratch.appendingPathComponent(id.rawValue + ".staging.sqlite")
        defer { try? FileManager.default.removeItem(at: staging) }
        progress?(0, "Processing")
        let fileSize = record.fileSize
        let started = DispatchTime.now()
        let staged: Result<StagedIngestion.Outcome, StagedIngestion.Failure>
        do {
            let contentType = record.contentType
            let options = record.options ?? ParseOptions()
            let scratch = self.scratch
            staged = try await offCooperativePool { [jobs] in
                jobs.acquireSlot()
                defer { jobs.releaseSlot() }
                do {
                    return .success(try StagedIngestion.process(
                        source: original, contentType: contentType, options: options, staging: staging, workDirectory: scratch,
                        isCancelled: { job.isCancelled },
                        progress: { bytes, rows in
                            job.update(rows: rows)
                            if fileSize > 0 { progress?(min(0.9, 0.9 * Double(bytes) / Double(fileSize)), "\(rows) rows") }
                        }))
                } catch let failure as StagedIngestion.Failure {
                    return .failure(failure)
                }
            }
        } catch is StagedIngestion.Cancelled {
            return
        } catch {
            staged = .failure(StagedIngestion.Failure(message: "processing failed: \(error)"))
        }
        if job.isCancelled { return }
        do {
            switch staged {
            case .success(let outcome):
                progress?(0.9, "Publishing \(outcome.rowCount) rows")
                do {
                    let publishing = DispatchTime.now()
                    try await publish(id, outcome: outcome, staging: staging, job: job)
                    logger.info("processed \(id): \(outcome.rowCount) rows staged in \(Self.seconds(started, publishing)) s, published (COPY) in \(Self.seconds(publishing, .now())) s")
                } catch let lost as Lost {
                    throw lost
                } catch where ConnectionLoss.isConnectionLoss(error) {
                    // Not the rows' fault: the lease lapses and this agent or another loads it again.
                    logger.warning("publishing \(id) was interrupted, the connection to PostgreSQL was lost; it is processed again when its lease lapses: \(String(reflecting: error))")
                    return
                } catch {
                    if job.isCancelled { return }
                    // Rows PostgreSQL refuses (a NUL in text) fail the source, in words.
                    logger.error("publishing \(id) failed: \(String(reflecting: error))")
                    try await markFailed(id, message: "the rows could not be stored in PostgreSQL")
                }
            case .failure(let failure):
                logger.info("processing \(id) failed: \(failure.message)")
                try await markFailed(id, message: failure.message)
            }
        } catch is Lost {
            logger.info("processing \(id) ended without publishing: the source was deleted or its lease taken over")
        } catch {
            logger.error("could not record the outcome of processing \(id): \(String(reflecting: error))")
        }
        progress?(1, "Done")
    }

    static func seconds(_ from: DispatchTime, _ to: DispatchTime) -> String {
        String(format: "%.2f", Double(to.uptimeNanoseconds - from.uptimeNanoseconds) / 1e9)
    }

    private func markFailed(_ id: DataSourceID, message: String) async throws {
                try await finish(id) { [logger] connection in
                    try await connection.query("""
                        UPDATE datasource_agent.datasources SET status = 'failed', processed_at = \(Timestamp.now().secondsSince1970),
                        error_message = \(message), row_count = 0, cleaned_rows = 0, error_count = 1, warning_count = 0
                        WHERE id = \(id.rawValue)
                        """, logger: logger)
                    return .failed
                }
    }

    private func publish(_ id: DataSourceID, outcome: StagedIngestion.Outcome, staging: URL, job: ProcessingJobs.Job) async throws {
        let columns = outcome.columns
        try await finish(id) { [logger] connection in
            let table = RowTable.name(id)
            let definitions = (["r bigint NOT NULL"] + columns.indices.map { "c\($0) \(RowTable.sqlType(columns[$0].type))" }).joined(separator: ", ")
            try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table)"), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(table) (\(definitions))"), logger: logger)
            // copyFrom quotes the name it is given whole, so the schema comes from the search path.
            try await connection.query("SET LOCAL search_path TO datasource_agent", logger: logger)
            try await connection.copyFrom(table: RowTable.unqualifiedName(id), columns: [], format: .text(.init()), logger: logger) { writer in
                for try await chunk in CopyText.chunks(staging: staging, columns: columns, isCancelled: { job.isCancelled }) {
                    try await writer.write(chunk)
                }
            }
            try await connection.query(PostgresQuery(unsafeSQL: "ALTER TABLE \(table) ADD PRIMARY KEY (r)"), logger: logger)
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
                columns_json = \(columns.catalogJSON), sheets_json = \(outcome.sheets.map(\.catalogJSON))
                WHERE id = \(id.rawValue)
                """, logger: logger)
            return .completed
        }
    }

    /// One transaction that moves the source out of `processing` if this agent still holds
    /// its lease (the row is locked first, so a delete or a takeover cannot interleave), logs
    /// the change and notifies every agent on commit. Throws `Lost` when the source is gone or
    /// no longer this agent's, and `ConnectionLoss.Closed` as soon as the connection closes
    /// under it (postgres-nio would otherwise wait for it forever: see `racingClose`).
    private func finish(_ id: DataSourceID, _ body: @escaping @Sendable (PostgresConnection) async throws -> DataSourceStatus) async throws {
        try await client.withConnection { [owner, logger] connection in
            do {
                try await ConnectionLoss.racingClose(of: connection) {
                    try await connection.withTransaction(logger: logger) { connection in
                        var holds = false
                        for try await _ in try await connection.query("""
                            SELECT 1 FROM datasource_agent.datasources
                            WHERE id = \(id.rawValue) AND status = 'processing' AND lease_owner = \(owner) FOR UPDATE
                            """, logger: logger) { holds = true }
                        guard holds else { throw Lost() }
                        let status = try await body(connection)
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
                }
            } catch let error as PostgresTransactionError {
                if error.closureError is Lost { throw Lost() }
                throw error
            }
        }
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
        for try await id in try await client.query("""
            UPDATE datasource_agent.datasources SET lease_heartbeat_at = \(now)
            WHERE status = 'processing' AND lease_owner = \(owner) AND id = ANY(\(running.map(\.rawValue)))
            RETURNING id
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
            startProcessing(record, original: local, progress: nil)
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

/// The staged rows as `COPY … FROM STDIN` text: tab-separated, `\N` for null, backslash,
/// tab, newline and carriage return escaped; `r` first, then each column as its type is stored.
enum CopyText {
    static let chunkBytes = 1 << 20

    /// Read on a thread of its own, at most a few chunks ahead of the writer.
    static func chunks(staging: URL, columns: [DataColumn], isCancelled: @escaping @Sendable () -> Bool) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let credits = DispatchSemaphore(value: 4)
        let types = columns.map(\.type)
        let stop = Atomic<Bool>(false)
        continuation.onTermination = { _ in
            stop.store(true, ordering: .relaxed)
            credits.signal()
        }
        let thread = Thread {
            var buffer: [UInt8] = []
            buffer.reserveCapacity(chunkBytes + 65536)
            var r: Int64 = 0
            func send() -> Bool {
                credits.wait()
                if stop.load(ordering: .relaxed) || isCancelled() { return false }
                continuation.yield(ByteBuffer(bytes: buffer))
                buffer.removeAll(keepingCapacity: true)
                return true
            }
            struct Stopped: Error {}
            do {
                try StagedIngestion.forEachRow(in: staging, columnCount: columns.count) { cells in
                    r += 1
                    append(r, to: &buffer)
                    for (index, cell) in cells.enumerated() {
                        buffer.append(0x09)
                        append(cell, type: types[index], to: &buffer)
                    }
                    buffer.append(0x0A)
                    if buffer.count >= chunkBytes, !send() { throw Stopped() }
                }
                if !buffer.isEmpty, !send() { throw Stopped() }
                continuation.finish()
            } catch is Stopped {
                continuation.finish(throwing: CancellationError())
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.name = "copy rows"
        thread.start()
        // The writer hands a credit back for each chunk it has sent.
        return AsyncThrowingStream { [iterator = SendableIterator(stream.makeAsyncIterator())] in
            let next = try await iterator.next()
            if next != nil { credits.signal() }
            return next
        }
    }

    static func append(_ value: Int64, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: String(value).utf8)
    }

    static func append(_ cell: StagedIngestion.Cell, type: ColumnType, to buffer: inout [UInt8]) {
        switch cell {
        case .null:
            buffer.append(0x5C); buffer.append(0x4E)
        case .int(let i):
            if type == .boolean { buffer.append(i != 0 ? 0x74 : 0x66) } else { append(i, to: &buffer) }
        case .double(let d):
            buffer.append(contentsOf: d.description.utf8)
        case .text(let bytes):
            for byte in bytes {
                switch byte {
                case 0x5C: buffer.append(0x5C); buffer.append(0x5C)
                case 0x09: buffer.append(0x5C); buffer.append(0x74)
                case 0x0A: buffer.append(0x5C); buffer.append(0x6E)
                case 0x0D: buffer.append(0x5C); buffer.append(0x72)
                default: buffer.append(byte)
                }
            }
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

/// An async iterator shared with the stream that wraps it (consumed by one task only).
final class SendableIterator: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
    init(_ iterator: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator) { self.iterator = iterator }
    func next() async throws -> ByteBuffer? { try await iterator.next() }
}
