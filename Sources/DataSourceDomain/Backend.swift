import JSONKit

/// What `datasources/upload` hands a backend.
public struct UploadRequest: Sendable {
    public enum Source: Sendable {
        /// An absolute path the agent reads.
        case path(String)
        /// Bytes sent inline, already decoded.
        case inline(fileName: String, bytes: [UInt8])
    }

    public var source: Source
    public var contentType: String?
    public var options: ParseOptions

    public init(source: Source, contentType: String? = nil, options: ParseOptions = ParseOptions()) {
        self.source = source
        self.contentType = contentType
        self.options = options
    }
}

/// Reader options a client may force instead of having them detected.
public struct ParseOptions: Sendable, Equatable, Codable {
    public var delimiter: String?
    public var quote: String?
    public var header: Bool?
    public var encoding: String?
    public var nullValues: [String]?
    /// false keeps every value as written; nil or true cleans (SPEC §8).
    public var clean: Bool?
    /// The sheet of a spreadsheet to read: its name, or its 1-based number; the first when absent.
    public var sheet: String?

    public init(
        delimiter: String? = nil, quote: String? = nil, header: Bool? = nil, encoding: String? = nil, nullValues: [String]? = nil,
        clean: Bool? = nil, sheet: String? = nil
    ) {
        self.sheet = sheet
        self.delimiter = delimiter
        self.quote = quote
        self.header = header
        self.encoding = encoding
        self.nullValues = nullValues
        self.clean = clean
    }
}

/// Receives an upload's progress while it processes (fractions 0...1).
public typealias ProgressHandler = @Sendable (_ fraction: Double, _ message: String) -> Void

/// The operations both backends provide: the embedded store and the remote Claro API.
public protocol DataSourceBackend: Sendable {
    func list(_ query: ListQuery) async throws -> ListPage
    func details(of id: DataSourceID, maxAge: Int?) async throws -> DataSourceDetails
    func data(_ query: DataQuery) async throws -> DataPage
    func delete(_ id: DataSourceID) async throws -> DeleteReceipt
    func downloadLink(for id: DataSourceID, expiresIn seconds: Int) async throws -> DownloadLink
    /// A signed link that streams the cleaned rows `data` would return (every page).
    func exportLink(_ query: DataQuery, format: ExportFormat, expiresIn seconds: Int) async throws -> DownloadLink
    /// What the presented API key (nil: none) may do (§10).
    func grant(forKey key: String?) async throws -> Grant
    /// Runs one read-only SQL statement over completed data sources.
    func query(_ request: SQLQuery) async throws -> SQLQueryResult
    /// Accepts a file and returns at once with `processing`; the outcome arrives as a status change.
    func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary
    /// Registers an observer of status changes; returns a token to pass to `removeObserver`.
    func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken
    func removeObserver(_ token: ObserverToken)
}

public struct ObserverToken: Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
}

/// An original file a download link may serve.
public struct DownloadableFile: Sendable {
    /// Reads the bytes of a range of the original, in order, chunk by chunk.
    public typealias RangeReader = @Sendable (_ range: ClosedRange<Int>) -> AsyncThrowingStream<[UInt8], any Error>

    public var path: String
    public var fileName: String
    public var contentType: String
    public var size: Int64
    /// Where the bytes come from when they are not a file of this machine (the originals of a
    /// PostgreSQL store): streamed, never loaded whole. nil: the file at `path`.
    public var reader: RangeReader?

    public init(path: String, fileName: String, contentType: String, size: Int64, reader: RangeReader? = nil) {
        self.path = path
        self.fileName = fileName
        self.contentType = contentType
        self.size = size
        self.reader = reader
    }
}

public enum DownloadAuthorization: Sendable {
    case granted(DownloadableFile)
    /// A tampered, malformed or expired link.
    case forbidden(reason: String)
    /// A valid link to a data source that no longer exists.
    case notFound(datasourceId: String)
}

/// The one shape of a download link, shared by whoever signs links and the listener that
/// serves them: `{origin}/downloads/{id}?expires={unix seconds}&signature={base64url}`.
public enum DownloadLinkShape {
    public static let pathPrefix = "/downloads/"
    public static let routePattern = "/downloads/:id"
    public static let expiresParameter = "expires"
    public static let signatureParameter = "signature"

    public static func path(for id: DataSourceID) -> String { pathPrefix + id.rawValue }

    /// Exports: `{origin}/exports/{id}?q={the query, signed too}&expires=…&signature=…`.
    public static let exportPathPrefix = "/exports/"
    public static let exportRoutePattern = "/exports/:id"
    public static let queryParameter = "q"

    public static func exportPath(for id: DataSourceID) -> String { exportPathPrefix + id.rawValue }

    /// The data source a link's path names, if it names one.
    public static func datasourceId(inPath path: String) -> String? {
        guard path.hasPrefix(pathPrefix) else { return nil }
        return String(path.dropFirst(pathPrefix.count))
    }
}

/// Decides whether a signed download request may be served, and what it serves.
public protocol DownloadAuthority: Sendable {
    /// Async: a store in a database looks the source up before the answer's status is known.
    func authorize(method: String, path: String, expires: String?, signature: String?) async -> DownloadAuthorization
    func authorizeExport(path: String, query: String?, expires: String?, signature: String?) async -> ExportAuthorization
}

/// Rows being exported: written chunk by chunk as they are read.
public struct ExportStream: Sendable {
    public var fileName: String
    public var contentType: String
    public var chunks: AsyncThrowingStream<[UInt8], any Error>

    public init(fileName: String, contentType: String, chunks: AsyncThrowingStream<[UInt8], any Error>) {
        self.fileName = fileName
        self.contentType = contentType
        self.chunks = chunks
    }
}

public enum ExportAuthorization: Sendable {
    case granted(ExportStream)
    case forbidden(reason: String)
    case notFound(datasourceId: String)
}

/// The HTTP listener that serves download links; started on first use.
public protocol DownloadOrigin: Sendable {
    /// `http://127.0.0.1:PORT`, once the listener is accepting connections.
    func origin() async throws -> String
}
