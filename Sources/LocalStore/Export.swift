import DataSourceDomain
import Foundation
import JSONKit
import Synchronization

/// `datasources/export`: a signed link whose query (filter, sort, columns, format) travels in
/// the link itself, signed with it; the listener streams every page of that query, read by
/// cursor, one page at a time as the client takes them.
extension LocalBackend {
    static let exportPageSize = 1000

    public func exportLink(_ query: DataQuery, format: ExportFormat, expiresIn seconds: Int) async throws -> DownloadLink {
        guard let server = downloadServerForLinks else {
            throw DataSourceError(.accessDenied, details: ["reason": "download links are not available in this process"])
        }
        // One row of the query now, so that a bad filter, sort or column is an error here.
        var probe = query
        probe.limit = 1
        probe.page = 1
        probe.cursor = nil
        _ = try await data(probe)
        let record = try await offCooperativePool { [self] in try storing { try catalog.record(query.datasourceId) } }
        guard let record else { throw DataSourceError.notFound(query.datasourceId.rawValue) }
        let origin = try await DownloadSigner.origin(of: server)
        return DownloadSigner(secret: secret).exportLink(
            origin: origin, query: query, format: format, expiresIn: seconds, sourceFileName: record.fileName)
    }

    public func authorizeExport(path: String, query: String?, expires: String?, signature: String?) async -> ExportAuthorization {
        if case .invalid(let reason) = DownloadSigner(secret: secret).verify(
            method: "GET", path: path, query: query, expires: expires, signature: signature) {
            return .forbidden(reason: reason)
        }
        let idText = path.hasPrefix(DownloadLinkShape.exportPathPrefix) ? String(path.dropFirst(DownloadLinkShape.exportPathPrefix.count)) : ""
        guard let id = DataSourceID(idText), let query, let spec = ExportSpec(encoded: query, id: id) else {
            return .notFound(datasourceId: idText)
        }
        guard let record = try? await offCooperativePool({ [self] in try catalog.record(id) }) else {
            return .notFound(datasourceId: idText)
        }
        let pages = ExportPages(backend: self, spec: spec)
        let chunks = AsyncThrowingStream<[UInt8], any Error>(unfolding: { try await pages.next() })
        return .granted(ExportStream(fileName: spec.fileName(for: record.fileName), contentType: spec.format.contentType, chunks: chunks))
    }
}

/// An export's query, as it travels in its link (base64url JSON); shared by every store that
/// serves exports.
public struct ExportSpec: Sendable {
    public var query: DataQuery
    public var format: ExportFormat

    public init(query: DataQuery, format: ExportFormat) {
        self.query = query
        self.format = format
    }

    public var encoded: String {
        var object: JSONObject = [
            "f": .string(format.rawValue),
            "s": .array(query.keys.map { ["c": .string($0.column), "d": .string($0.direction.rawValue)] }),
        ]
        if let filter = query.filter { object["q"] = .string(filter) }
        if let columns = query.columns { object["c"] = .array(columns.map { .string($0) }) }
        return Data(JSONValue.object(object).serialized()).base64URLEncoded
    }

    public init?(encoded: String, id: DataSourceID) {
        guard let data = Data(base64URLEncoded: encoded), let object = try? JSONParser.parse(Array(data)),
            let format = object["f"]?.stringValue.flatMap(ExportFormat.init(rawValue:)), case .array(let sort)? = object["s"]
        else { return nil }
        let keys = sort.compactMap { key -> DataQuery.SortKey? in
            guard let column = key["c"]?.stringValue, let direction = key["d"]?.stringValue.flatMap(SortDirection.init(rawValue:)) else { return nil }
            return DataQuery.SortKey(column: column, direction: direction)
        }
        var columns: [String]?
        if case .array(let names)? = object["c"] { columns = names.compactMap(\.stringValue) }
        self.query = DataQuery(
            datasourceId: id, limit: LocalBackend.exportPageSize, sort: keys.first?.column, order: keys.first?.direction ?? .asc,
            filter: object["q"]?.stringValue, columns: columns, sortKeys: keys)
        self.format = format
    }

    /// `products.csv` exported as JSON Lines is `products.jsonl`.
    public func fileName(for original: String) -> String {
        let base = (original as NSString).deletingPathExtension
        return (base.isEmpty ? original : base) + "." + format.rawValue
    }
}

/// Reads an export's pages one after another, each written as one chunk: any backend's
/// `data`, page by page by cursor.
public final class ExportPages: Sendable {
    private let backend: any DataSourceBackend
    private let spec: ExportSpec
    private let state = Mutex<(cursor: String?, started: Bool, done: Bool)>((nil, false, false))

    public init(backend: any DataSourceBackend, spec: ExportSpec) {
        self.backend = backend
        self.spec = spec
    }

    public func next() async throws -> [UInt8]? {
        let (cursor, started, done) = state.withLock { ($0.cursor, $0.started, $0.done) }
        guard !done else { return nil }
        var query = spec.query
        query.cursor = cursor
        let page = try await backend.data(query)
        let next = page.pagination.nextCursor
        state.withLock { $0 = (next, true, next == nil) }
        var writer = JSONWriter(capacity: 64 * 1024)
        switch spec.format {
        case .csv:
            if !started { CSVExport.writeRow(page.columns.map { .string($0.name) }, into: &writer) }
            for row in page.rows { CSVExport.writeRow(row, into: &writer) }
        case .jsonl:
            for row in page.rows {
                writer.byte(0x7B)
                for (index, column) in page.columns.enumerated() {
                    if index > 0 { writer.byte(0x2C) }
                    writer.string(column.name)
                    writer.byte(0x3A)
                    writer.value(row[index])
                }
                writer.raw("}\n")
            }
        }
        return writer.bytes
    }
}

/// RFC 4180: fields separated by commas, records by CRLF; a field holding a comma, a quote,
/// a CR or an LF, or starting or ending with a space, is quoted with quotes doubled.
enum CSVExport {
    static func writeRow(_ values: [JSONValue], into writer: inout JSONWriter) {
        for (index, value) in values.enumerated() {
            if index > 0 { writer.byte(0x2C) }
            switch value {
            case .null: break
            case .bool(let b): writer.raw(b ? "true" : "false")
            case .int(let i): writer.int(i)
            case .double(let d): writer.double(d)
            case .string(let s): field(s, into: &writer)
            case .array, .object: field(value.jsonText, into: &writer)
            }
        }
        writer.raw("\r\n")
    }

    static func field(_ text: String, into writer: inout JSONWriter) {
        let bytes = Array(text.utf8)
        let needsQuotes = bytes.contains { $0 == 0x2C || $0 == 0x22 || $0 == 0x0D || $0 == 0x0A }
            || bytes.first == 0x20 || bytes.last == 0x20
        guard needsQuotes else {
            writer.raw(bytes)
            return
        }
        writer.byte(0x22)
        for byte in bytes {
            if byte == 0x22 { writer.byte(0x22) }
            writer.byte(byte)
        }
        writer.byte(0x22)
    }
}
