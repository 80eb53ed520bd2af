import DataSourceDomain
import Foundation
import GRDB
import JSONKit
import Logging
import Synchronization

/// The embedded backend: a store directory holding the catalog, each data source's rows in
/// its own SQLite file, and the original uploads.
public final class LocalBackend: DataSourceBackend {
    public let layout: StoreLayout
    let catalog: Catalog
    let logger: Logger
    let observers = ObserverList<StatusChange>()
    let processor: ProcessingScheduler
    let watcher: ChangeWatcher
    let secret: StoreSecret
    let queries: QueryEngine
    let pathUploads: PathUploadPolicy
    private let columnCache = Mutex<[DataSourceID: [DataColumn]]>([:])
    /// The API keys as last read, and when (see `grant(forKey:)`).
    let keyGate = KeyGate()
    private let downloadServer = Mutex<(any DownloadOrigin)?>(nil)
    static let maxInlineBytes = 64 * 1024 * 1024

    /// `allowedPaths`: when not empty, `path` uploads read only files under these directories.
    public init(root: URL, logger: Logger, maxConcurrentProcessing: Int = 2, allowedPaths: [String] = []) throws {
        let layout = StoreLayout(root: root)
        self.layout = layout
        try layout.create()
        pathUploads = PathUploadPolicy(storeRoot: root, allowedDirectories: allowedPaths)
        // Several processes may open a new store at once: creating the catalog, migrating it
        // and creating the secret happen under an exclusive lock on the store.
        let (catalog, secret) = try layout.withExclusiveLock {
            (try Catalog(path: layout.catalog.path), try StoreSecret.loadOrCreate(at: layout.secret))
        }
        self.catalog = catalog
        self.secret = secret
        self.logger = logger
        queries = QueryEngine(layout: layout, secret: secret)
        processor = ProcessingScheduler(maxConcurrent: maxConcurrentProcessing)
        watcher = try ChangeWatcher(catalog: catalog)
        watcher.start { [observers] change in observers.emit(change) }
        try resumeInterruptedProcessing()
        for leftover in try StoreChecker.removeLeftovers(layout: layout, catalog: catalog) {
            logger.info("removed \(leftover), left by an interrupted upload, load or delete")
        }
    }

    // MARK: Reading

    public func list(_ query: ListQuery) async throws -> ListPage {
        try await offCooperativePool { [self] in try storing { try catalog.list(query) } }
    }

    public func details(of id: DataSourceID, maxAge: Int?) async throws -> DataSourceDetails {
        try await offCooperativePool { [self] in try detailsNow(of: id) }
    }

    private func detailsNow(of id: DataSourceID) throws -> DataSourceDetails {
        guard let record = try storing({ try catalog.record(id) }) else { throw DataSourceError.notFound(id.rawValue) }
        var details = record.details
        if record.status == .processing, let rows = processor.rowsSoFar(id) {
            details.rowCount = rows
        }
        return details
    }

    public func data(_ query: DataQuery) async throws -> DataPage {
        try await offCooperativePool(on: .rows) { [self] in try dataNow(query) }
    }

    private func dataNow(_ query: DataQuery) throws -> DataPage {
        let id = query.datasourceId
        guard let state = try storing({ try catalog.queryState(id) }) else { throw DataSourceError.notFound(id.rawValue) }
        switch state.status {
        case .processing:
            let estimate = processor.job(id)?.estimatedCompletion ?? state.estimatedCompletion.map(Timestamp.init(secondsSince1970:))
            throw DataSourceError.processingInProgress(status: .processing, estimatedCompletion: estimate)
        case .failed:
            throw DataSourceError.processingFailed(id: id, message: state.errorMessage ?? "processing failed")
        case .completed:
            do {
                return try storing(filter: query.filter) {
                    try queries.page(query, columns: try completedColumns(id), rowCount: state.rowCount ?? 0)
                }
            } catch {
                // Deleted since its state was read, perhaps by another agent on the store: that
                // is a source not found, not a failing store nor a filter SQLite would not run
                // (the missing table's error would say either). Opening its vanished row file
                // may have created an empty one in its place, which goes too.
                guard try storing({ try catalog.queryState(id) }) == nil else { throw error }
                removeRowFiles(of: id)
                throw DataSourceError.notFound(id.rawValue)
            }
        }
    }

    /// A statement runs on a thread of its own: a long one (up to its time limit) must not
    /// hold a thread other requests need, and a cancelled request interrupts it.
    public func query(_ request: SQLQuery) async throws -> SQLQueryResult {
        let interrupt = QueryInterrupt()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let thread = Thread { [self] in continuation.resume(with: Result { try queryNow(request, interrupt: interrupt) }) }
                thread.name = "sql query"
                thread.start()
            }
        } onCancel: {
            interrupt.set()
        }
    }

    /// Resolves the sources the statement names (quoted ids, or aliases from `sources`) to
    /// their row files, then runs it (`SQLQueryEngine`).
    private func queryNow(_ request: SQLQuery, interrupt: QueryInterrupt) throws -> SQLQueryResult {
        let named = try request.namedSources(
            quotedIDs: Self.quotedIdentifiers(in: request.sql).compactMap { q in DataSourceID(q).map { (q, $0) } })
        let sources = try named.map { id, names -> SQLSource in
            guard let state = try storing({ try catalog.queryState(id) }) else {
                throw SQLQuery.invalid("no data source \(id.rawValue)")
            }
            switch state.status {
            case .processing:
                throw DataSourceError.processingInProgress(status: .processing, estimatedCompletion: state.estimatedCompletion.map(Timestamp.init(secondsSince1970:)))
            case .failed:
                throw DataSourceError.processingFailed(id: id, message: state.errorMessage ?? "processing failed")
            case .completed:
                return SQLSource(id: id, names: names, columns: try completedColumns(id), path: layout.table(id.rawValue).path)
            }
        }
        return try SQLQueryEngine.run(request, sources: sources, interrupt: interrupt)
    }

    /// The double-quoted identifiers of a statement (a doubled quote escapes one), outside
    /// string literals and comments.
    static func quotedIdentifiers(in sql: String) -> [String] {
        let chars = Array(sql)
        var found: [String] = []
        var i = 0
        while i < chars.count {
            switch chars[i] {
            case "'":
                i += 1
                while i < chars.count { if chars[i] == "'" { if i + 1 < chars.count, chars[i + 1] == "'" { i += 2; continue }; break }; i += 1 }
                i += 1
            case "-" where i + 1 < chars.count && chars[i + 1] == "-":
                while i < chars.count, chars[i] != "\n" { i += 1 }
            case "/" where i + 1 < chars.count && chars[i + 1] == "*":
                i += 2
                while i + 1 < chars.count, !(chars[i] == "*" && chars[i + 1] == "/") { i += 1 }
                i += 2
            case "\"":
                var name = ""
                i += 1
                while i < chars.count {
                    if chars[i] == "\"" {
                        if i + 1 < chars.count, chars[i + 1] == "\"" { name.append("\""); i += 2; continue }
                        break
                    }
                    name.append(chars[i])
                    i += 1
                }
                found.append(name)
                i += 1
            default:
                i += 1
            }
        }
        return found
    }

    /// A completed source's columns never change, so they are decoded from the catalog once.
    private func completedColumns(_ id: DataSourceID) throws -> [DataColumn] {
        if let cached = columnCache.withLock({ $0[id] }) { return cached }
        let columns = try catalog.record(id)?.columns ?? []
        columnCache.withLock { cache in
            if cache.count >= 256 { cache.removeAll() }
            cache[id] = columns
        }
        return columns
    }

    /// Removes the metadata, the rows (their whole file), the sort indexes and the original;
    /// a source still processing has its processing stopped.
    public func delete(_ id: DataSourceID) async throws -> DeleteReceipt {
        try await offCooperativePool { [self] in try deleteNow(id) }
    }

    private func deleteNow(_ id: DataSourceID) throws -> DeleteReceipt {
        try storing {
            // Held shared so that `check` never sees a delete half done.
            try layout.withOperationShared {
                guard try catalog.delete(id) != nil else { throw DataSourceError.notFound(id.rawValue) }
                processor.cancel(id)
                removeRowFiles(of: id)
            }
        }
        try? catalog.checkpoint()
        return DeleteReceipt(datasourceId: id, deletedAt: .now())
    }

    /// Forgets a deleted source's connections and caches and removes its files.
    private func removeRowFiles(of id: DataSourceID) {
        queries.forget(id)
        columnCache.withLock { _ = $0.removeValue(forKey: id) }
        let fm = FileManager.default
        for url in [layout.table(id.rawValue), layout.partialTable(id.rawValue), layout.original(id.rawValue)] {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                try? fm.removeItem(atPath: url.path + suffix)
            }
        }
    }

    public func downloadLink(for id: DataSourceID, expiresIn seconds: Int) async throws -> DownloadLink {
        guard let record = try await offCooperativePool({ [self] in try storing { try catalog.record(id) } }) else { throw DataSourceError.notFound(id.rawValue) }
        guard let server = downloadServer.withLock({ $0 }) else {
            throw DataSourceError(.accessDenied, details: ["reason": "download links are not available in this process"])
        }
        let origin = try await DownloadSigner.origin(of: server)
        let expiresAt = Timestamp.now().adding(seconds: Int64(seconds))
        return DownloadLink(
            downloadUrl: DownloadSigner(secret: secret).url(origin: origin, id: id, expiresAt: expiresAt),
            fileName: record.fileName, expiresAt: expiresAt, fileSize: record.fileSize)
    }

    var downloadServerForLinks: (any DownloadOrigin)? { downloadServer.withLock { $0 } }

    /// The listener's origin; a listener that cannot run makes links unavailable, said plainly.
    /// Connects the listener that serves download links (wired by the executable).
    public func attachDownloadServer(_ server: any DownloadOrigin) {
        downloadServer.withLock { $0 = server }
    }

    // MARK: Upload

    public func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary {
        try await offCooperativePool(on: .rows) { [self] in try uploadNow(request, progress: progress) }
    }

    private func uploadNow(_ request: UploadRequest, progress: ProgressHandler?) throws -> DataSourceSummary {
        let record = try storing { try layout.withOperationShared { try storeUpload(request) } }
        startProcessing(record, progress: progress)
        return record.summary
    }

    /// Writes the original and its catalog entry (`processing`); the operations lock is held
    /// meanwhile, so that an original is never seen without its entry.
    private func storeUpload(_ request: UploadRequest) throws -> DataSourceRecord {
        let id = DataSourceID.random()
        let original = layout.original(id.rawValue)
        let fileName: String
        switch request.source {
        case .path(let path):
            fileName = try pathUploads.copy(from: path, to: original)
        case .inline(let name, let bytes):
            guard bytes.count <= Self.maxInlineBytes else {
                throw DataSourceError.invalidParameter(
                    "content", value: nil, reason: "inline content is limited to 64 MiB decoded; upload by path instead",
                    extra: ["max": .int(Int64(Self.maxInlineBytes)), "size": .int(Int64(bytes.count))])
            }
            fileName = name
            try Self.writeOriginal(bytes, to: original)
        }
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: original.path)[.size] as? Int64) ?? 0
        let contentType: String
        if let given = request.contentType?.trimmingCharacters(in: .whitespaces), !given.isEmpty {
            contentType = given.lowercased()
        } else {
            contentType = ContentTypeGuess.guess(fileName: fileName, prefix: (try? SourceInspection.readPrefix(original, count: 8192)) ?? [])
        }
        let now = Timestamp.now()
        let record: DataSourceRecord
        do {
            record = try storing { try catalog.insertNew(DataSourceRecord(
                id: id, fileName: fileName, contentType: contentType, fileSize: fileSize,
                status: .processing, uploadedAt: now.secondsSince1970, sequence: 0,
                options: request.options, ownerPid: getpid(), heartbeatAt: now.secondsSince1970)) }
        } catch {
            try? FileManager.default.removeItem(at: original)
            throw error
        }
        return record
    }

    /// Writes inline content as a new original (0600, synced); a failure is a storage error.
    static func writeOriginal(_ bytes: [UInt8], to url: URL) throws {
        let file = try NewStoreFile(url)
        try bytes.withUnsafeBytes { buffer in
            if let base = buffer.baseAddress { try file.write(base, count: buffer.count) }
        }
        try file.keep()
    }

    // MARK: Processing

    private func startProcessing(_ record: DataSourceRecord, progress: ProgressHandler?) {
        let id = record.id
        let options = record.options ?? ParseOptions()
        processor.submit(id: id, fileSize: record.fileSize) { [self] job in
            process(id: id, contentType: record.contentType, options: options, job: job, progress: progress)
        }
    }

    private func process(id: DataSourceID, contentType: String, options: ParseOptions, job: ProcessingJob, progress: ProgressHandler?) {
        let partial = layout.partialTable(id.rawValue)
        let final = layout.table(id.rawValue)
        progress?(0, "Processing")
        var lastHeartbeat = Date()
        let outcome: Result<IngestionResult, IngestionFailure>
        do {
            let pipeline = try IngestionPipeline(
                source: layout.original(id.rawValue), contentType: contentType, options: options, output: partial,
                workDirectory: layout.tables, isCancelled: { job.isCancelled }, stages: { [processor] in processor.running <= 1 },
                progress: { [catalog] bytes, rows in
                    job.update(bytesDone: bytes, rows: rows)
                    if let total = job.fileSize.nonZero {
                        progress?(min(0.99, Double(bytes) / Double(total)), "\(rows) rows")
                    }
                    if Date().timeIntervalSince(lastHeartbeat) > 1 {
                        lastHeartbeat = Date()
                        try? catalog.heartbeat(id, estimatedCompletion: job.estimatedCompletion?.secondsSince1970)
                    }
                })
            outcome = .success(try pipeline.run())
        } catch is IngestionPipeline.Cancelled {
            try? FileManager.default.removeItem(at: partial)
            return
        } catch let failure as IngestionFailure {
            outcome = .failure(failure)
        } catch {
            outcome = .failure(IngestionFailure("processing failed: \(error)"))
        }
        let committed: Bool
        do {
            switch outcome {
            case .success(let result):
                try? FileManager.default.removeItem(at: final)
                try FileManager.default.moveItem(at: partial, to: final)
                committed = try catalog.finishProcessing(id) { record in
                    record.status = .completed
                    record.processedAt = Timestamp.now().secondsSince1970
                    record.rowCount = result.rowCount
                    record.cleanedRows = result.stats.cleanedRows
                    record.errorCount = result.stats.errors
                    record.warningCount = result.stats.warnings
                    record.columns = result.columns
                    record.issues = result.issues
                    record.sheets = result.sheets
                }
            case .failure(let failure):
                try? FileManager.default.removeItem(at: partial)
                logger.info("processing \(id) failed: \(failure.message)")
                committed = try catalog.finishProcessing(id) { record in
                    record.status = .failed
                    record.processedAt = Timestamp.now().secondsSince1970
                    record.errorMessage = failure.message
                    record.rowCount = 0
                    record.cleanedRows = 0
                    record.errorCount = 1
                    record.warningCount = 0
                }
            }
        } catch {
            logger.error("could not record the outcome of processing \(id): \(error)")
            committed = false
        }
        if !committed {
            // Deleted while processing: leave nothing behind.
            try? FileManager.default.removeItem(at: final)
            try? FileManager.default.removeItem(at: partial)
        }
        progress?(1, "Done")
        watcher.poke()
    }

    /// Processes again every source a dead process left `processing`, from its original.
    private func resumeInterruptedProcessing() throws {
        let orphans = try catalog.claimOrphans(
            ownerPid: getpid(), isAlive: { kill($0, 0) == 0 || errno == EPERM }, staleAfter: 60)
        for record in orphans {
            logger.info("resuming processing of \(record.id) left by an interrupted run")
            try? FileManager.default.removeItem(at: layout.partialTable(record.id.rawValue))
            startProcessing(record, progress: nil)
        }
    }

    public func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken {
        observers.add(observer)
    }

    public func removeObserver(_ token: ObserverToken) {
        observers.remove(token)
    }

    /// Waits until no processing job of this process is running (tests, one-shot import).
    public func waitForIdle() {
        processor.waitForIdle()
    }

    /// Stops announcing status changes (the process is ending).
    public func stopWatchingChanges() {
        watcher.stop()
    }

    /// Whether this process is processing (or about to process) an accepted upload; such
    /// work must be handed on before the process leaves (see `process-pending`).
    public var hasPendingProcessing: Bool { processor.hasJobs }
}


extension Int64 {
    var nonZero: Int64? { self == 0 ? nil : self }
}

extension LocalBackend: DownloadAuthority {
    /// Signature first (constant-time), then expiry, then existence: a valid link to a deleted
    /// source is a 404, anything forged or stale a 403.
    public func authorize(method: String, path: String, expires: String?, signature: String?) -> DownloadAuthorization {
        if case .invalid(let reason) = DownloadSigner(secret: secret).verify(method: method, path: path, expires: expires, signature: signature) {
            return .forbidden(reason: reason)
        }
        let idText = DownloadLinkShape.datasourceId(inPath: path) ?? ""
        guard let id = DataSourceID(idText), let record = try? catalog.record(id) else {
            return .notFound(datasourceId: idText)
        }
        let original = layout.original(id.rawValue)
        guard FileManager.default.fileExists(atPath: original.path) else { return .notFound(datasourceId: idText) }
        return .granted(DownloadableFile(path: original.path, fileName: record.fileName, contentType: record.contentType, size: record.fileSize))
    }
}
