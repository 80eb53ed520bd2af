import DataSourceDomain
import Foundation
import JSONKit
import Logging
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The remote backend: every method mapped onto a Claro v2 REST API (the hosted one, or
/// `datasource-agent serve-http`), with `list` and `get` answers cached in
/// `<store>/cache.sqlite`, and the sources seen processing polled so that their changes are
/// pushed like the local backend's. As a `Service` it runs the watcher and, when the group
/// shuts down, stops it and closes the HTTP client.
public final class ClaroBackend: DataSourceBackend, Service {
    let client: ClaroClient
    let cache: MetadataCache
    let watcher: ProcessingWatcher
    let logger: Logger
    /// `maxAge` when a request gives none (`--cache-ttl`).
    let defaultMaxAge: Int
    private let observers = ObserverList<StatusChange>()

    /// Largest file a `path` upload sends (read into memory, then sent in one request).
    static let maxUploadBytes = 256 * 1024 * 1024
    static let maxInlineBytes = 64 * 1024 * 1024

    public init(
        baseURL: String, apiKey: String?, store: URL, cacheTTL: Int, logger: Logger,
        settings: ClaroClientSettings = ClaroClientSettings(),
        pollInitialDelay: Duration = .seconds(1), pollMaxDelay: Duration = .seconds(30)
    ) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: store.path) {
            try fm.createDirectory(at: store, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        client = ClaroClient(baseURL: baseURL, apiKey: apiKey, settings: settings, logger: logger)
        cache = try MetadataCache(path: store.appendingPathComponent("cache.sqlite").path, baseURL: client.baseURL, apiKey: apiKey)
        watcher = ProcessingWatcher(initialDelay: pollInitialDelay, maxDelay: pollMaxDelay)
        self.logger = logger
        self.defaultMaxAge = cacheTTL
    }

    // MARK: Service

    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            await watcher.run { [self] id in await poll(id) }
        }
        await client.shutdown()
    }

    /// Closes the HTTP client without running the service (tests, one-shot use).
    public func shutdown() async {
        await client.shutdown()
    }

    // MARK: Reading

    public func list(_ query: ListQuery) async throws -> ListPage {
        let maxAge = Double(query.maxAge ?? defaultMaxAge)
        let cached = await cache.off { try $0.list(query) } ?? nil
        if let cached, cached.age < maxAge, let page = try? ListPage(json: cached.json) {
            watchProcessing(page.dataSources)
            return page
        }
        var items: [(String, String)] = [("page", String(query.page)), ("limit", String(query.limit))]
        if let status = query.status { items.append(("status", status.rawValue)) }
        if let contentType = query.contentType { items.append(("contentType", contentType)) }
        do {
            let fetchedAt = Date().timeIntervalSince1970
            let json = try await client.json(.GET, "/datasources", query: items)
            var page = try shaped("GET /datasources") { () throws(ModelJSONError) in try ListPage(json: json) }
            page.cache = nil
            let stored = page.json
            await cache.off { try $0.storeList(query, json: stored, fetchedAt: fetchedAt) }
            for summary in page.dataSources { saw(summary) }
            return page
        } catch let error as DataSourceError where error.code == .upstreamUnavailable {
            guard let cached, var page = try? ListPage(json: cached.json) else { throw error }
            logger.info("serving a cached list answer: \(error.details)")
            page.cache = CacheInfo(stale: true, fetchedAt: cached.timestamp)
            watchProcessing(page.dataSources)
            return page
        }
    }

    public func details(of id: DataSourceID, maxAge: Int?) async throws -> DataSourceDetails {
        let maxAge = Double(maxAge ?? defaultMaxAge)
        let cached = await cache.off { try $0.details(id) } ?? nil
        if let cached, cached.age < maxAge, let details = try? DataSourceDetails(json: cached.json) {
            watchProcessing([details.summary])
            return details
        }
        do {
            return try await fetchDetails(id)
        } catch let error as DataSourceError where error.code == .upstreamUnavailable {
            guard let cached, var details = try? DataSourceDetails(json: cached.json) else { throw error }
            logger.info("serving a cached answer for \(id): \(error.details)")
            details.cache = CacheInfo(stale: true, fetchedAt: cached.timestamp)
            watchProcessing([details.summary])
            return details
        }
    }

    /// Asks the server, caches the answer, and lets the watcher know what it saw.
    private func fetchDetails(_ id: DataSourceID) async throws -> DataSourceDetails {
        let path = "/datasources/\(id.rawValue)"
        do {
            let fetchedAt = Date().timeIntervalSince1970
            let json = try await client.json(.GET, path)
            var details = try shaped("GET \(path)") { () throws(ModelJSONError) in try DataSourceDetails(json: json) }
            details.cache = nil
            let stored = details.json
            await cache.off { try $0.storeDetails(id, json: stored, fetchedAt: fetchedAt) }
            await saw(details)
            return details
        } catch let error as DataSourceError where error.code == .datasourceNotFound {
            await forget(id)
            throw error
        }
    }

    public func data(_ query: DataQuery) async throws -> DataPage {
        var items: [(String, String)] = [("page", String(query.page)), ("limit", String(query.limit))]
        let keys = query.keys
        if !keys.isEmpty {
            items.append(("sort", keys.map(\.column).joined(separator: ",")))
            let directions = keys.map(\.direction.rawValue)
            items.append(("order", Set(directions).count == 1 ? directions[0] : directions.joined(separator: ",")))
        }
        if let filter = query.filter { items.append(("filter", filter)) }
        if let cursor = query.cursor { items.append(("cursor", cursor)) }
        // Repeated, as the REST face reads an array parameter: a column name may hold a comma.
        for column in query.columns ?? [] { items.append(("columns", column)) }
        let path = "/datasources/\(query.datasourceId.rawValue)/data"
        do {
            let json = try await client.json(.GET, path, query: items)
            return try shaped("GET \(path)") { () throws(ModelJSONError) in try DataPage(json: json) }
        } catch let error as DataSourceError where error.code == .processingInProgress {
            watcher.watch(query.datasourceId)
            throw error
        }
    }

    public func delete(_ id: DataSourceID) async throws -> DeleteReceipt {
        let path = "/datasources/\(id.rawValue)"
        do {
            let json = try await client.json(.DELETE, path)
            let receipt = try shaped("DELETE \(path)") { () throws(ModelJSONError) in try DeleteReceipt(json: json) }
            await forget(id)
            return receipt
        } catch let error as DataSourceError where error.code == .datasourceNotFound {
            await forget(id)
            throw error
        }
    }

    public func downloadLink(for id: DataSourceID, expiresIn seconds: Int) async throws -> DownloadLink {
        let path = "/datasources/\(id.rawValue)/download"
        let json = try await client.json(.POST, path, body: ["expiresIn": .int(Int64(seconds))])
        return try shaped("POST \(path)") { () throws(ModelJSONError) in try DownloadLink(json: json) }
    }

    public func exportLink(_ query: DataQuery, format: ExportFormat, expiresIn seconds: Int) async throws -> DownloadLink {
        let path = "/datasources/\(query.datasourceId.rawValue)/export"
        var body: JSONObject = ["format": .string(format.rawValue)]
        if let filter = query.filter { body["filter"] = .string(filter) }
        let keys = query.keys
        if !keys.isEmpty {
            body["sort"] = .string(keys.map(\.column).joined(separator: ","))
            let directions = keys.map(\.direction.rawValue)
            body["order"] = .string(Set(directions).count == 1 ? directions[0] : directions.joined(separator: ","))
        }
        if let columns = query.columns { body["columns"] = .array(columns.map { .string($0) }) }
        body["expiresIn"] = .int(Int64(seconds))
        let answer = try await client.send(.POST, path, body: JSONValue.object(body).serialized())
        if [404, 405, 501].contains(answer.status) {
            let error = client.error(from: answer, method: .POST, path: path)
            // A 404 may mean the source is gone, or that the server has no export endpoint: the
            // source's own details tell which.
            if answer.status == 404, error.code == .datasourceNotFound {
                _ = try await fetchDetails(query.datasourceId)
            }
            throw client.notSupported(
                method: "datasources/export", endpoint: "POST /datasources/{id}/export", status: answer.status,
                note: "the hosted Claro API documents no export; datasources/export needs a server that provides it, such as datasource-agent serve-http")
        }
        let json = try client.decode(answer, method: .POST, path: path)
        return try shaped("POST \(path)") { () throws(ModelJSONError) in try DownloadLink(json: json) }
    }

    /// The remote server enforces keys (CLARO_API_KEY); locally every session is let through.
    public func grant(forKey key: String?) async throws -> Grant { .open }

    public func query(_ request: SQLQuery) async throws -> SQLQueryResult {
        var body: JSONObject = ["sql": .string(request.sql)]
        switch request.parameters {
        case .none: break
        case .positional(let values): body["params"] = .array(values)
        case .named(let object): body["params"] = .object(object)
        }
        if !request.sources.isEmpty {
            body["sources"] = .object(JSONObject(request.sources.map { (key: $0.alias, value: .string($0.id.rawValue)) }))
        }
        body["limit"] = .int(Int64(request.limit))
        body["timeoutMs"] = .int(Int64(request.timeoutMs))
        let timeout = max(client.settings.requestTimeout, .milliseconds(request.timeoutMs) + .seconds(10))
        let answer = try await client.send(.POST, "/query", body: JSONValue.object(body).serialized(), timeout: timeout)
        if [404, 405, 501].contains(answer.status) {
            let error = client.error(from: answer, method: .POST, path: "/query")
            if answer.status == 404, error.code == .datasourceNotFound { throw error }
            throw client.notSupported(
                method: "datasources/query", endpoint: "POST /query", status: answer.status,
                note: "the hosted Claro API documents no query endpoint; datasources/query needs a server that provides it, such as datasource-agent serve-http")
        }
        let json = try client.decode(answer, method: .POST, path: "/query")
        return try shaped("POST /query") { () throws(ModelJSONError) in try SQLQueryResult(json: json) }
    }

    // MARK: Upload

    public func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary {
        let (fileName, bytes) = try await Self.contents(of: request.source)
        let contentType = request.contentType.flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0.lowercased() }
            ?? Self.guessContentType(fileName)
        let form = MultipartForm(fileName: fileName, contentType: contentType, bytes: bytes, options: Self.optionsJSON(request.options))
        progress?(0, "Uploading")
        let answer = try await client.send(
            .POST, "/datasources", body: form.body, contentType: form.contentType, timeout: client.settings.uploadTimeout)
        let json = try client.decode(answer, method: .POST, path: "/datasources")
        let summary = try shaped("POST /datasources") { () throws(ModelJSONError) in try DataSourceSummary(json: json) }
        await cache.off { try $0.forgetLists() }
        if summary.status == .processing {
            watcher.watch(summary.datasourceId, progress: progress)
        } else {
            progress?(1, "Done")
        }
        return summary
    }

    /// The file's name and bytes: a `path` is read here (a regular file, opened without
    /// blocking), then sent like inline content.
    static func contents(of source: UploadRequest.Source) async throws -> (String, [UInt8]) {
        switch source {
        case .inline(let name, let bytes):
            guard bytes.count <= maxInlineBytes else {
                throw DataSourceError.invalidParameter(
                    "content", value: nil, reason: "inline content is limited to 64 MiB decoded; upload by path instead",
                    extra: ["max": .int(Int64(maxInlineBytes)), "size": .int(Int64(bytes.count))])
            }
            return (name, bytes)
        case .path(let path):
            return try await Task.detached { try readFile(path) }.value
        }
    }

    static func readFile(_ path: String) throws -> (String, [UInt8]) {
        func refuse(_ reason: String, extra: JSONObject = [:]) -> DataSourceError {
            DataSourceError.invalidParameter("path", value: .string(path), reason: reason, extra: extra)
        }
        guard path.hasPrefix("/") else { throw refuse("must be an absolute path") }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw refuse(errno == ENOENT ? "no such file" : "cannot be read: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw refuse("is not a regular file") }
        let size = Int(info.st_size)
        guard size <= maxUploadBytes else {
            throw refuse("the remote backend uploads files of at most 256 MiB", extra: ["max": .int(Int64(maxUploadBytes)), "size": .int(Int64(size))])
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            guard n > 0 else {
                if n == 0 { break }
                throw refuse("cannot be read: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        bytes.removeLast(size - done)
        return ((path as NSString).lastPathComponent, bytes)
    }

    static func optionsJSON(_ options: ParseOptions) -> JSONValue? {
        var object: JSONObject = [:]
        if let delimiter = options.delimiter { object["delimiter"] = .string(delimiter) }
        if let quote = options.quote { object["quote"] = .string(quote) }
        if let header = options.header { object["header"] = .bool(header) }
        if let encoding = options.encoding { object["encoding"] = .string(encoding) }
        if let nullValues = options.nullValues { object["nullValues"] = .array(nullValues.map { .string($0) }) }
        if let clean = options.clean { object["clean"] = .bool(clean) }
        if let sheet = options.sheet { object["sheet"] = .string(sheet) }
        return object.count == 0 ? nil : .object(object)
    }

    static func guessContentType(_ fileName: String) -> String {
        switch (fileName as NSString).pathExtension.lowercased() {
        case "csv": "text/csv"
        case "tsv", "tab": "text/tab-separated-values"
        case "json": "application/json"
        case "jsonl", "ndjson": "application/x-ndjson"
        case "txt", "text": "text/plain"
        case "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        case "ods": "application/vnd.oasis.opendocument.spreadsheet"
        case "pdf": "application/pdf"
        default: "application/octet-stream"
        }
    }

    // MARK: Watching

    public func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken {
        observers.add(observer)
    }

    public func removeObserver(_ token: ObserverToken) {
        observers.remove(token)
    }

    private func emit(_ change: StatusChange) {
        observers.emit(change)
    }

    /// A list item the server answered: a processing source is watched; a watched one that is
    /// no longer processing is asked about at once (its details make the notification).
    private func saw(_ summary: DataSourceSummary) {
        if summary.status == .processing {
            watcher.watch(summary.datasourceId)
        } else if watcher.isWatching(summary.datasourceId) {
            watcher.pollSoon(summary.datasourceId)
        }
    }

    /// A cached answer showing a source processing (perhaps cached by an earlier agent on this
    /// store): it is watched too, so its end is still announced.
    private func watchProcessing(_ summaries: [DataSourceSummary]) {
        for summary in summaries where summary.status == .processing { watcher.watch(summary.datasourceId) }
    }

    /// Details the server answered: a watched source that finished is announced now.
    private func saw(_ details: DataSourceDetails) async {
        let id = details.summary.datasourceId
        if details.summary.status == .processing {
            watcher.watch(id)
        } else if let entry = watcher.stop(id) {
            await finished(details, entry: entry)
        }
    }

    private func finished(_ details: DataSourceDetails, entry: ProcessingWatcher.Entry) async {
        await cache.off { try $0.forgetLists() }
        emit(StatusChange(details: details, previousStatus: .processing))
        entry.progress?(1, details.summary.status == .completed ? "Done" : "Failed")
    }

    /// One poll of a watched source.
    func poll(_ id: DataSourceID) async {
        do {
            let details = try await fetchDetails(id)
            if details.summary.status == .processing { watcher.backOff(id) }
        } catch let error as DataSourceError where error.code == .datasourceNotFound {
            // Deleted meanwhile: nothing more to announce (`fetchDetails` forgot it).
        } catch {
            logger.debug("polling \(id): \(error)")
            watcher.backOff(id)
        }
    }

    private func forget(_ id: DataSourceID) async {
        await cache.off { try $0.forget(id) }
        watcher.stop(id)?.progress?(1, "Deleted")
    }

    /// An answer that does not have the documented shape is UPSTREAM_ERROR naming the field.
    private func shaped<T>(_ endpoint: String, _ read: () throws(ModelJSONError) -> T) throws -> T {
        do {
            return try read()
        } catch {
            throw DataSourceError(.upstreamError, details: [
                "endpoint": .string(endpoint), "reason": .string("the answer does not have the documented shape: \(error)"),
            ])
        }
    }
}

/// A `multipart/form-data` body (RFC 7578): the `file` part, and `options` as JSON.
struct MultipartForm {
    let boundary = "datasource-agent-" + UUID().uuidString.lowercased()
    var body: [UInt8] = []

    var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    init(fileName: String, contentType: String, bytes: [UInt8], options: JSONValue?) {
        var body: [UInt8] = []
        body.reserveCapacity(bytes.count + 512)
        func line(_ text: String) { body += Array((text + "\r\n").utf8) }
        let quotedName = fileName.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        line("--\(boundary)")
        line("Content-Disposition: form-data; name=\"file\"; filename=\"\(quotedName)\"")
        line("Content-Type: \(contentType)")
        line("")
        body += bytes
        line("")
        if let options {
            line("--\(boundary)")
            line("Content-Disposition: form-data; name=\"options\"")
            line("Content-Type: application/json")
            line("")
            body += options.serialized()
            line("")
        }
        line("--\(boundary)--")
        self.body = body
    }
}
