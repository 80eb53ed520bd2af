import DataSourceDomain
import Foundation
import JSONKit
import JSONRPC
import Synchronization

struct UploadMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var path: String?
        var fileName: String?
        var content: String?
        var encoding: String?
        var contentType: String?
        var options: ParseOptions?
    }

    static let name = "datasources/upload"
    static let access = MethodAccess.write
    static let tool: ToolDescription? = ToolDescription(
        name: "upload_datasource", title: "Upload a file",
        guidance: "Give an absolute path, or fileName with content. Processing (type inference, cleaning) runs in the background; the result has status processing. With a progress token, the call waits for processing to end and reports progress.",
        waitsForProcessing: true)
    static let summary = "Upload a file (by absolute path, or inline) and process it in the background. Returns at once with status processing; the outcome is pushed as datasources/statusChanged."
    static let params: [MethodDescription.Param] = [
        .init("path", Schema.string, "Absolute path of a file the agent reads. Give either path or fileName with content."),
        .init("fileName", Schema.string, "Name of the inline file (with content)."),
        .init("content", Schema.string, "Inline file content, at most 64 MiB decoded."),
        .init("encoding", ["type": "string", "enum": ["utf8", "base64"], "default": "utf8"], "How content is encoded."),
        .init("contentType", Schema.string, "MIME type; guessed from the name and bytes when absent."),
        .init("options", Schema.object([
            "delimiter": Schema.string, "quote": Schema.string, "header": ["type": "boolean"],
            "encoding": Schema.string, "nullValues": ["type": "array", "items": Schema.string],
            "sheet": ["type": "string", "description": "XLSX and ODS: the sheet to read, by name or by 1-based number (\"2\"); the first sheet when absent."],
            "clean": ["type": "boolean", "default": true, "description": "false keeps every value as written (no trimming, no null tokens, no number or date cleaning); types are still inferred where the text is already canonical."],
        ], required: [], additional: false), "Reader options for delimited text; detected when absent."),
        .init("workDoneToken", ["type": ["string", "integer"]], "Progress token: $/progress notifications follow processing."),
    ]
    static let result = Schema.summary
    static let errors: [DataSourceError.Code] = [.invalidParameters, .accessDenied, .unauthorized, .storageError]
    static let http: HTTPRoute? = .init(.post, "/datasources", input: .multipartUpload(fileParam: "path", fields: ["contentType", "options"]), successStatus: 201)

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        let request = try Self.request(params)
        let progress = context.progress.map(UploadProgress.init)
        return RawJSON(.object(try await backend.upload(request, progress: progress?.handler).jsonObject))
    }

    static func request(_ params: Params) throws -> UploadRequest {
        let source: UploadRequest.Source
        switch (params.path, params.content) {
        case (let path?, nil):
            guard !path.utf8.contains(0) else {
                throw DataSourceError.invalidParameter("path", value: .string(path), reason: "must not contain a NUL character")
            }
            source = .path(path)
        case (nil, let content?):
            guard let fileName = params.fileName, !fileName.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw DataSourceError.invalidParameter("fileName", value: params.fileName.map { .string($0) }, reason: "is required with inline content")
            }
            guard !fileName.contains("/"), !fileName.contains("\0") else {
                throw DataSourceError.invalidParameter("fileName", value: .string(fileName), reason: "must be a file name, not a path")
            }
            source = .inline(fileName: fileName, bytes: try decode(content, encoding: params.encoding))
        case (.some, .some):
            throw DataSourceError.invalidParameter("path", value: params.path.map { .string($0) }, reason: "give either path or fileName with content, not both")
        case (nil, nil):
            throw DataSourceError.invalidParameter("path", value: nil, reason: "give either path (an absolute path) or fileName with content")
        }
        if let delimiter = params.options?.delimiter, delimiter != "\\t", delimiter.utf8.count != 1 {
            throw DataSourceError.invalidParameter("options.delimiter", value: .string(delimiter), reason: "must be one ASCII character")
        }
        if let quote = params.options?.quote, quote.utf8.count > 1 {
            throw DataSourceError.invalidParameter("options.quote", value: .string(quote), reason: "must be one ASCII character or empty")
        }
        return UploadRequest(source: source, contentType: params.contentType, options: params.options ?? ParseOptions())
    }

    static func decode(_ content: String, encoding: String?) throws -> [UInt8] {
        switch encoding ?? "utf8" {
        case "utf8", "utf-8":
            return Array(content.utf8)
        case "base64":
            return try decodeBase64(content)
        default:
            throw DataSourceError.invalidParameter(
                "encoding", value: .string(encoding ?? ""), reason: "must be utf8 or base64", extra: ["allowed": ["utf8", "base64"]])
        }
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
}

struct DeleteMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var datasourceId: String
    }

    static let name = "datasources/delete"
    static let access = MethodAccess.write
    static let tool: ToolDescription? = ToolDescription(
        name: "delete_datasource", title: "Delete a data source",
        guidance: "Permanently removes the data source, its rows and its original file.")
    static let summary = "Delete a data source: its metadata, rows, indexes and original file. Stops processing if it is still running."
    static let params: [MethodDescription.Param] = [.init("datasourceId", Schema.uuid, required: true, "The data source's id.")]
    static let result = Schema.object([
        "message": ["type": "string", "const": "Data source deleted successfully"], "datasourceId": Schema.uuid, "deletedAt": Schema.timestamp,
    ], required: ["message", "datasourceId", "deletedAt"])
    static let errors: [DataSourceError.Code] = [.datasourceNotFound, .accessDenied, .unauthorized, .storageError]
    static let http: HTTPRoute? = .init(.delete, "/datasources/{datasourceId}")

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        RawJSON(try await backend.delete(try Validate.datasourceId(params.datasourceId)).json)
    }
}

/// Turns an upload's processing progress into `$/progress` (or MCP progress) notifications:
/// begin at once, a report per 5 % step, end when processing finishes — after the upload's
/// response, since processing runs in the background.
final class UploadProgress: Sendable {
    let reporter: any RequestProgress
    private let lastPercent = Mutex<Int>(-1)

    init(_ reporter: any RequestProgress) {
        self.reporter = reporter
        reporter.begin(title: "Processing upload", percentage: 0)
    }

    var handler: ProgressHandler {
        { [self] fraction, message in
            let percent = Int(fraction * 100)
            if fraction >= 1 {
                reporter.end(message: message)
                return
            }
            let shouldReport = lastPercent.withLock { last in
                guard percent >= last + 5 else { return false }
                last = percent
                return true
            }
            if shouldReport { reporter.report(message: message, percentage: percent) }
        }
    }
}
