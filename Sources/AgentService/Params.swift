import Foundation
import DataSourceDomain
import JSONKit

/// Checks shared by every method's params, each failing with INVALID_PARAMETERS whose
/// details name the parameter, the value and what is allowed.
enum Validate {
    static func page(_ value: Int?) throws -> Int {
        guard let value else { return 1 }
        guard value >= 1 else {
            throw DataSourceError.invalidParameter("page", value: .int(Int64(value)), reason: "must be at least 1", extra: ["min": 1])
        }
        guard value <= Pagination.maxPage else {
            throw DataSourceError.invalidParameter(
                "page", value: .int(Int64(value)), reason: "must be at most \(Pagination.maxPage)", extra: ["max": .int(Int64(Pagination.maxPage))])
        }
        return value
    }

    static func limit(_ value: Int?, default defaultValue: Int, max: Int) throws -> Int {
        guard let value else { return defaultValue }
        guard value >= 1 else {
            throw DataSourceError.invalidParameter("limit", value: .int(Int64(value)), reason: "must be at least 1", extra: ["min": 1, "max": .int(Int64(max))])
        }
        guard value <= max else {
            throw DataSourceError.invalidParameter("limit", value: .int(Int64(value)), reason: "must be at most \(max)", extra: ["max": .int(Int64(max))])
        }
        return value
    }

    static func status(_ value: String?) throws -> DataSourceStatus? {
        guard let value else { return nil }
        guard let status = DataSourceStatus(rawValue: value) else {
            throw DataSourceError.invalidParameter(
                "status", value: .string(value), reason: "must be one of processing, completed, failed",
                extra: ["allowed": .array(DataSourceStatus.allCases.map { .string($0.rawValue) })])
        }
        return status
    }

    static func maxAge(_ value: Int?) throws -> Int? {
        guard let value else { return nil }
        guard value >= 0 else {
            throw DataSourceError.invalidParameter("maxAge", value: .int(Int64(value)), reason: "must be at least 0", extra: ["min": 0])
        }
        return value
    }

    /// An id that is not a UUID cannot name a data source, so it is simply not found.
    static func datasourceId(_ value: String) throws -> DataSourceID {
        guard let id = DataSourceID(value) else { throw DataSourceError.notFound(value) }
        return id
    }
}

struct ListParams: Decodable, Sendable {
    var page: Int?
    var limit: Int?
    var status: String?
    var contentType: String?
    var maxAge: Int?

    func query() throws -> ListQuery {
        ListQuery(
            page: try Validate.page(page),
            limit: try Validate.limit(limit, default: ListQuery.defaultLimit, max: ListQuery.maxLimit),
            status: try Validate.status(status), contentType: contentType, maxAge: try Validate.maxAge(maxAge))
    }
}

struct GetParams: Decodable, Sendable {
    var datasourceId: String
    var maxAge: Int?
}

struct UploadParams: Decodable, Sendable {
    var path: String?
    var fileName: String?
    var content: String?
    var encoding: String?
    var contentType: String?
    var options: ParseOptions?

    func request() throws -> UploadRequest {
        let source: UploadRequest.Source
        switch (path, content) {
        case (let path?, nil):
            guard !path.utf8.contains(0) else {
                throw DataSourceError.invalidParameter("path", value: .string(path), reason: "must not contain a NUL character")
            }
            source = .path(path)
        case (nil, let content?):
            guard let fileName, !fileName.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw DataSourceError.invalidParameter("fileName", value: fileName.map { .string($0) }, reason: "is required with inline content")
            }
            guard !fileName.contains("/"), !fileName.contains("\0") else {
                throw DataSourceError.invalidParameter("fileName", value: .string(fileName), reason: "must be a file name, not a path")
            }
            source = .inline(fileName: fileName, bytes: try decode(content))
        case (.some, .some):
            throw DataSourceError.invalidParameter("path", value: path.map { .string($0) }, reason: "give either path or fileName with content, not both")
        case (nil, nil):
            throw DataSourceError.invalidParameter("path", value: nil, reason: "give either path (an absolute path) or fileName with content")
        }
        if let delimiter = options?.delimiter, delimiter != "\\t", delimiter.utf8.count != 1 {
            throw DataSourceError.invalidParameter("options.delimiter", value: .string(delimiter), reason: "must be one ASCII character")
        }
        if let quote = options?.quote, quote.utf8.count > 1 {
            throw DataSourceError.invalidParameter("options.quote", value: .string(quote), reason: "must be one ASCII character or empty")
        }
        return UploadRequest(source: source, contentType: contentType, options: options ?? ParseOptions())
    }

    /// Standard or URL-safe base64, padded or not; line breaks and spaces between groups (as
    /// in MIME) are allowed, any other character is an error.
    static func decodeBase64(_ content: String) throws -> [UInt8] {
        var text = content.utf8.filter { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        for index in text.indices {
            if text[index] == UInt8(ascii: "-") { text[index] = UInt8(ascii: "+") }
            if text[index] == UInt8(ascii: "_") { text[index] = UInt8(ascii: "/") }
        }
        let padding = text.reversed().prefix(while: { $0 == UInt8(ascii: "=") }).count
        if padding == 0, text.count % 4 != 0 { text += Array(repeating: UInt8(ascii: "="), count: 4 - text.count % 4) }
        guard text.count % 4 == 0, padding <= 2, let data = Data(base64Encoded: Data(text)) else {
            throw DataSourceError.invalidParameter("content", value: nil, reason: "is not valid base64")
        }
        return Array(data)
    }

    private func decode(_ content: String) throws -> [UInt8] {
        switch encoding ?? "utf8" {
        case "utf8", "utf-8":
            return Array(content.utf8)
        case "base64":
            return try Self.decodeBase64(content)
        default:
            throw DataSourceError.invalidParameter(
                "encoding", value: .string(encoding ?? ""), reason: "must be utf8 or base64", extra: ["allowed": ["utf8", "base64"]])
        }
    }
}

struct DataParams: Decodable, Sendable {
    var datasourceId: String
    var page: Int?
    var limit: Int?
    var sort: String?
    var order: String?
    var filter: String?
    var cursor: String?

    func query() throws -> DataQuery {
        let id = try Validate.datasourceId(datasourceId)
        var direction = SortDirection.asc
        if let order {
            guard let parsed = SortDirection(rawValue: order.lowercased()) else {
                throw DataSourceError.invalidParameter("order", value: .string(order), reason: "must be asc or desc", extra: ["allowed": ["asc", "desc"]])
            }
            direction = parsed
        }
        if let filter, filter.count > FilterParser.maxLength {
            throw DataSourceError.invalidParameter(
                "filter", value: nil, reason: "longer than \(FilterParser.maxLength) characters", extra: ["max": .int(Int64(FilterParser.maxLength))])
        }
        return DataQuery(
            datasourceId: id, page: try Validate.page(page),
            limit: try Validate.limit(limit, default: DataQuery.defaultLimit, max: DataQuery.maxLimit),
            sort: sort?.isEmpty == true ? nil : sort, order: direction, filter: filter, cursor: cursor?.isEmpty == true ? nil : cursor)
    }
}

struct DeleteParams: Decodable, Sendable {
    var datasourceId: String
}

struct DownloadParams: Decodable, Sendable {
    static let defaultExpiry = 3600
    static let maxExpiry = 86400

    var datasourceId: String
    var expiresIn: Int?

    func expiry() throws -> Int {
        guard let expiresIn else { return Self.defaultExpiry }
        guard (1...Self.maxExpiry).contains(expiresIn) else {
            throw DataSourceError.invalidParameter(
                "expiresIn", value: .int(Int64(expiresIn)), reason: "must be between 1 and \(Self.maxExpiry) seconds",
                extra: ["min": 1, "max": .int(Int64(Self.maxExpiry))])
        }
        return expiresIn
    }
}
