import AgentService
import DataSourceDomain
import DownloadListener
import Foundation
import Hummingbird
import JSONKit
import Logging
import ServiceLifecycle
import Synchronization

/// The Claro v2 REST face (`serve-http`, §10): each route an adapter over a method
/// descriptor, called through `AgentService.invoke` with the request's Bearer key, so the
/// params, their validation, the key check and the errors are those of JSON-RPC. It also
/// serves the signed download and export links, so links carry the REST origin.
public final class RESTServer: Service, DownloadOrigin {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// The origin put in download links; default `http://HOST:PORT` as bound.
        public var publicURL: String?
        /// Requests per key per minute.
        public var rateLimit: Int
        public var maxUploadBytes: Int
        /// Where to write `HOST:PORT` once bound (for `--listen HOST:0`).
        public var portFile: String?
        public var version: String
        /// How often an open event stream is sent `: keep-alive` (and its key checked again).
        public var eventsHeartbeat: Duration
        /// How long a token from `POST /api/v2/events/token` opens event streams.
        public var eventsTokenLifetime: Duration

        public init(
            host: String, port: Int, publicURL: String?, rateLimit: Int, maxUploadBytes: Int, portFile: String?, version: String,
            eventsHeartbeat: Duration = .seconds(15), eventsTokenLifetime: Duration = .seconds(60)
        ) {
            self.eventsHeartbeat = eventsHeartbeat
            self.eventsTokenLifetime = eventsTokenLifetime
            self.host = host
            self.port = port
            self.publicURL = publicURL
            self.rateLimit = rateLimit
            self.maxUploadBytes = maxUploadBytes
            self.portFile = portFile
            self.version = version
        }
    }

    /// The largest JSON body accepted (the params of a query may carry bind values).
    static let maxJSONBodyBytes = 16 * 1024 * 1024
    /// The largest form field other than the file.
    static let maxFieldBytes = 1024 * 1024

    let service: AgentService
    let authority: any DownloadAuthority
    let configuration: Configuration
    let logger: Logger
    let limiter: RateLimiter
    let openAPI: [UInt8]
    let events: EventHub
    let eventTokens: EventTokens
    let mcpSessions = MCPSessions()
    private let state = Mutex<State>(.starting(waiters: []))

    private enum State {
        case starting(waiters: [CheckedContinuation<String, any Error>])
        case running(origin: String)
        case stopped
    }

    public init(service: AgentService, authority: any DownloadAuthority, configuration: Configuration, logger: Logger) {
        self.service = service
        self.authority = authority
        self.configuration = configuration
        self.logger = logger
        limiter = RateLimiter(limit: configuration.rateLimit)
        openAPI = AgentService.openAPIDocument(version: configuration.version).prettyPrinted(indent: 2) + [0x0A]
        events = EventHub()
        eventTokens = EventTokens(lifetime: configuration.eventsTokenLifetime)
    }

    // MARK: DownloadOrigin

    public func origin() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<String, any Error>? in
                switch state {
                case .running(let origin): return .success(origin)
                case .stopped: return .failure(RESTServerError.stopped)
                case .starting(var waiters):
                    waiters.append(continuation)
                    state = .starting(waiters: waiters)
                    return nil
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    enum RESTServerError: Error, CustomStringConvertible {
        case stopped
        var description: String { "the REST listener has stopped" }
    }

    private func settle(_ next: State) {
        let waiters = state.withLock { state -> [CheckedContinuation<String, any Error>] in
            defer { state = next }
            if case .starting(let waiters) = state { return waiters }
            return []
        }
        for waiter in waiters {
            if case .running(let origin) = next { waiter.resume(returning: origin) } else { waiter.resume(throwing: RESTServerError.stopped) }
        }
    }

    /// `http://host:port`, with an IPv6 literal in brackets; a wildcard address becomes loopback.
    static func origin(host: String, port: Int) -> String {
        switch host {
        case "0.0.0.0", "": return "http://127.0.0.1:\(port)"
        case "::", "[::]": return "http://[::1]:\(port)"
        default: return host.contains(":") && !host.hasPrefix("[") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        }
    }

    // MARK: Service

    public func run() async throws {
        let router = Router(context: RESTRequestContext.self)
        router.add(middleware: RESTMiddleware(limiter: limiter, logger: logger))
        for operation in AgentService.restOperations {
            let path = operation.route.fullPath.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: "")
            router.on(RouterPath(path), method: HTTPRequest.Method(rawValue: operation.route.verb.rawValue) ?? .get) { [self] request, context in
                await handle(operation, request: request, context: context)
            }
        }
        let openAPI = self.openAPI
        router.get(RouterPath(HTTPRoute.prefix + "/openapi.json")) { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json", .contentLength: String(openAPI.count)],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: openAPI)))
        }
        addEventRoutes(to: router)
        addMCPRoute(to: router)
        addPageRoutes(to: router)
        DownloadServer.addLinkRoutes(to: router, authority: authority)
        let app = Application(
            router: router,
            // Idle keep-alive connections are closed as on the download listener; an open
            // event stream is a response being written, never idle.
            server: DownloadServer.http1(idleTimeout: DownloadServer.defaultIdleTimeout),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? configuration.port
                let bound = Self.origin(host: configuration.host, port: port)
                let origin = configuration.publicURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? bound
                // The one line a launcher waits for; on stderr, like every log.
                FileHandle.standardError.write(Data("datasource-agent serve-http listening on \(bound)\n".utf8))
                if let portFile = configuration.portFile {
                    let text = "\(configuration.host):\(port)\n"
                    let temporary = portFile + ".tmp"
                    if FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) {
                        _ = rename(temporary, portFile)
                    }
                }
                settle(.running(origin: origin))
            },
            logger: logger)
        // Status changes become events from now on; the heartbeat runs beside the listener.
        let events = self.events
        let observer = service.addStatusObserver { change in events.publish(change) }
        defer { service.removeStatusObserver(observer) }
        let heartbeat = Task { [configuration] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: configuration.eventsHeartbeat) } catch { return }
                events.beat()
            }
        }
        defer { heartbeat.cancel() }
        do {
            // Open event streams would hold the graceful shutdown's drain forever: they end
            // (cleanly, after the frame being written) as soon as shutdown begins.
            try await withGracefulShutdownHandler {
                try await app.run()
            } onGracefulShutdown: { [mcpSessions] in
                events.close()
                mcpSessions.closeAll()
            }
            events.close()
            settle(.stopped)
        } catch {
            events.close()
            settle(.stopped)
            throw error
        }
    }

    // MARK: Requests

    /// The key of `Authorization: Bearer KEY`; any other Authorization is an invalid key.
    static func bearerKey(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let trimmed = header.trimmingWhitespace()
        if trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " {
            return String(trimmed.dropFirst(7)).trimmingWhitespace()
        }
        return trimmed
    }

    func handle(_ operation: RESTOperation, request: Request, context: RESTRequestContext) async -> Response {
        let key = Self.bearerKey(request)
        var temporaryDirectory: String?
        defer { if let temporaryDirectory { try? FileManager.default.removeItem(atPath: temporaryDirectory) } }
        do {
            // The key first, before any of the body is read.
            try await service.admit(operation, apiKey: key)
            let path = Dictionary(uniqueKeysWithValues: operation.route.pathParams.compactMap { name in
                context.parameters.get(name).map { (name, $0) }
            })
            let params: JSONValue
            switch operation.route.input {
            case .query:
                params = try operation.params(path: path, query: try Self.queryItems(request.uri.query), body: nil)
            case .jsonBody:
                var request = request
                let buffer = try await request.collectBody(upTo: Self.maxJSONBodyBytes)
                let bytes = Array(buffer.readableBytesView)
                var body: JSONValue?
                if !bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
                    do {
                        body = try JSONParser.parse(bytes)
                    } catch {
                        throw DataSourceError.invalidParameter("body", value: nil, reason: "is not valid JSON: \(error)")
                    }
                }
                params = try operation.params(path: path, query: [], body: body)
            case .multipartUpload(let fileParam, let fields):
                let upload = try await receiveUpload(request, operation: operation, fields: fields)
                temporaryDirectory = upload.directory
                var body = upload.fields
                body[fileParam] = .string(upload.file)
                params = try operation.params(path: path, query: [], body: .object(body))
            }
            let result = try await service.invoke(method: operation.methodName, params: params, apiKey: key)
            return Response(
                status: HTTPResponse.Status(code: operation.route.successStatus),
                headers: [.contentType: "application/json", .contentLength: String(result.count)],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: result)))
        } catch let error as DataSourceError {
            return DownloadServer.json(error)
        } catch let error as UploadTooLarge {
            var response = DownloadServer.json(DataSourceError.invalidParameter(
                "file", value: nil, reason: "is larger than \(error.limit) bytes", extra: ["max": .int(Int64(error.limit))]))
            response.status = .contentTooLarge
            return response
        } catch let error as HTTPError where error.status == .contentTooLarge {
            var response = DownloadServer.json(DataSourceError.invalidParameter(
                "body", value: nil, reason: "is larger than \(Self.maxJSONBodyBytes) bytes", extra: ["max": .int(Int64(Self.maxJSONBodyBytes))]))
            response.status = .contentTooLarge
            return response
        } catch {
            logger.error("\(operation.methodName) over HTTP failed: \(error)")
            return DownloadServer.json(DataSourceError(.storageError, details: ["reason": "the request failed inside the agent"]))
        }
    }

    /// `a=1&b=x+y&c=%2F`: form encoding, `+` is a space; a malformed escape is INVALID_PARAMETERS.
    static func queryItems(_ query: String?) throws -> [(name: String, value: String)] {
        guard let query, !query.isEmpty else { return [] }
        return try query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) throws -> String {
                guard let decoded = String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncodingUTF8() else {
                    throw DataSourceError.invalidParameter(
                        String(parts[0]), value: .string(String(text)), reason: "is not valid percent-encoded UTF-8")
                }
                return decoded
            }
            return (try decode(parts[0]), parts.count > 1 ? try decode(parts[1]) : "")
        }
    }

    struct UploadTooLarge: Error {
        var limit: Int
    }

    struct ReceivedUpload {
        var directory: String
        var file: String
        var fields: JSONObject
    }

    /// Streams a `multipart/form-data` body: the `file` part into a new private temporary
    /// directory (under its own name, which becomes the data source's fileName), the other
    /// parts into the named fields (JSON for an object-typed param). Anything else is
    /// INVALID_PARAMETERS.
    func receiveUpload(_ request: Request, operation: RESTOperation, fields: [String]) async throws -> ReceivedUpload {
        guard let contentType = request.headers[.contentType], let boundary = MultipartParser.boundary(contentType: contentType) else {
            throw DataSourceError.invalidParameter(
                "body", value: request.headers[.contentType].map { .string($0) }, reason: "must be multipart/form-data with a file part")
        }
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("datasource-agent-upload-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw DataSourceError(.storageError, details: ["reason": "cannot make a temporary directory for the upload"])
        }
        let directory = String(cString: made)
        var received = ReceivedUpload(directory: directory, file: "", fields: [:])
        do {
            var parser = MultipartParser(boundary: boundary)
            var writer: FileWriter?
            var field: (name: String, bytes: [UInt8])?
            var fileSize = 0
            let limit = configuration.maxUploadBytes
            defer { writer?.close() }
            func on(_ event: MultipartParser.Event) throws {
                switch event {
                case .begin(let headers):
                    let name = headers.name ?? ""
                    if name == "file" {
                        guard received.file.isEmpty else {
                            throw DataSourceError.invalidParameter("file", value: nil, reason: "is given more than once")
                        }
                        let fileName = Self.fileName(headers.fileName)
                        received.file = (directory as NSString).appendingPathComponent(fileName)
                        writer = try FileWriter(path: received.file)
                    } else if fields.contains(name) {
                        guard received.fields[name] == nil, field?.name != name else {
                            throw DataSourceError.invalidParameter(name, value: nil, reason: "is given more than once")
                        }
                        field = (name, [])
                    } else {
                        var allowed = ["file"] + fields
                        allowed.sort()
                        throw DataSourceError.invalidParameter(
                            name.isEmpty ? "body" : name, value: nil,
                            reason: name.isEmpty ? "a part has no name" : "unknown form field", extra: ["allowed": .array(allowed.map { .string($0) })])
                    }
                case .bytes(let bytes):
                    if let writer {
                        fileSize += bytes.count
                        guard fileSize <= limit else { throw UploadTooLarge(limit: limit) }
                        try writer.write(bytes)
                    } else if field != nil {
                        guard field!.bytes.count + bytes.count <= Self.maxFieldBytes else {
                            throw DataSourceError.invalidParameter(field!.name, value: nil, reason: "is longer than \(Self.maxFieldBytes) bytes")
                        }
                        field!.bytes.append(contentsOf: bytes)
                    }
                case .end:
                    if let open = writer {
                        try open.finish()
                        writer = nil
                    }
                    if let (name, bytes) = field {
                        received.fields[name] = try Self.fieldValue(name: name, bytes: bytes, schema: operation.schema(of: name))
                        field = nil
                    }
                }
            }
            for try await chunk in request.body {
                try parser.feed(chunk.readableBytesView, emit: on)
                if parser.isDone { break }
            }
            try parser.finish()
        } catch let failure as MultipartParser.Failure {
            try? FileManager.default.removeItem(atPath: directory)
            throw DataSourceError.invalidParameter("body", value: nil, reason: "is not valid multipart/form-data: \(failure)")
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        guard !received.file.isEmpty else {
            try? FileManager.default.removeItem(atPath: directory)
            throw DataSourceError.invalidParameter("file", value: nil, reason: "is required: a multipart part named file")
        }
        return received
    }

    /// The file name a client gave, reduced to a safe last path component.
    static func fileName(_ given: String?) -> String {
        let base = (given ?? "").split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        let cleaned = base.filter { $0 != "\0" }.trimmingWhitespace()
        if cleaned.isEmpty || cleaned == "." || cleaned == ".." { return "upload" }
        return String(cleaned.prefix(255))
    }

    /// A form field as the param's JSON value: parsed JSON for an object, else the text.
    static func fieldValue(name: String, bytes: [UInt8], schema: JSONValue?) throws -> JSONValue {
        guard schema?["type"]?.stringValue == "object" else {
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw DataSourceError.invalidParameter(name, value: nil, reason: "is not UTF-8 text")
            }
            return .string(text)
        }
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw DataSourceError.invalidParameter(name, value: .string(String(decoding: bytes.prefix(200), as: UTF8.self)), reason: "must be a JSON object")
        }
    }
}

/// Writes a new private file (0600) with plain system calls.
final class FileWriter {
    private var descriptor: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw DataSourceError(.storageError, details: ["reason": .string("cannot write the upload: \(String(cString: strerror(errno)))")])
        }
    }

    func write(_ bytes: ArraySlice<UInt8>) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw DataSourceError(.storageError, details: ["reason": .string("cannot write the upload: \(String(cString: strerror(errno)))")])
                }
                offset += written
            }
        }
    }

    func finish() throws {
        close()
    }

    func close() {
        if descriptor >= 0 {
            _ = Foundation.close(descriptor)
            descriptor = -1
        }
    }
}

/// The request context of the REST face: Hummingbird's basic one plus the client's address,
/// by which requests without a key are counted.
struct RESTRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The peer's IP address (nil for a Unix socket or when the channel no longer knows it).
    let clientAddress: String?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// Every answer of the REST face: the rate limit counted and its headers set, and errors
/// that never reach a route (an unknown path, a method a path does not take) as Claro bodies.
struct RESTMiddleware: RouterMiddleware {
    typealias Context = RESTRequestContext
    let limiter: RateLimiter
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Per key; requests without one (the page, its event stream's token) per client address.
        let decision = limiter.take(RESTServer.bearerKey(request).map { "key " + $0 } ?? "anonymous " + (context.clientAddress ?? ""))
        var response: Response
        if decision.allowed {
            do {
                response = try await next(request, context)
            } catch let error as HTTPError {
                let details: JSONValue = ["method": .string(request.method.rawValue), "path": .string(request.uri.path)]
                let allowed = error.status == .notFound ? Self.methods(allowedAt: request.uri.path) : []
                if !allowed.isEmpty {
                    response = Self.body(status: .methodNotAllowed, [
                        "error": "Method not allowed", "code": "METHOD_NOT_ALLOWED", "details": details,
                    ])
                    response.headers[.allow] = allowed.joined(separator: ", ")
                } else {
                    response = Self.body(status: error.status, [
                        "error": .string(error.status.reasonPhrase),
                        "code": .string(error.status == .notFound ? "NOT_FOUND" : "HTTP_\(error.status.code)"), "details": details,
                    ])
                }
            } catch {
                logger.error("\(request.method.rawValue) \(request.uri.path) failed: \(error)")
                response = DownloadServer.json(DataSourceError(.storageError, details: ["reason": "the request failed inside the agent"]))
            }
        } else {
            // The same code the remote backend gives when it meets a 429 it will not wait out.
            response = DownloadServer.json(DataSourceError(.rateLimited, details: [
                "limit": .int(Int64(decision.limit)), "retryAfter": .int(decision.retryAfter),
            ]))
            response.headers[.retryAfter] = String(decision.retryAfter)
        }
        // Nothing the face serves is to be sniffed into another type (the page's own headers
        // add its Content-Security-Policy).
        response.headers[.init("X-Content-Type-Options")!] = "nosniff"
        response.headers[.init("X-RateLimit-Limit")!] = String(decision.limit)
        response.headers[.init("X-RateLimit-Remaining")!] = String(decision.remaining)
        response.headers[.init("X-RateLimit-Reset")!] = String(decision.reset)
        return response
    }

    /// The methods the API takes at a path that exists (for 405 and its Allow header).
    static func methods(allowedAt path: String) -> [String] {
        let segments = path.split(separator: "/")
        var verbs: [String] = []
        let routes = AgentService.restOperations.map { ($0.route.verb.rawValue, $0.route.fullPath) } + RESTServer.extraRoutes
        for (verb, template) in routes {
            let parts = template.split(separator: "/")
            guard parts.count == segments.count else { continue }
            let matches = zip(parts, segments).allSatisfy { part, segment in part.hasPrefix("{") || part == segment }
            if matches, !verbs.contains(verb) { verbs.append(verb) }
        }
        return verbs
    }

    static func body(status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        let bytes = value.serialized()
        return Response(
            status: status, headers: [.contentType: "application/json", .contentLength: String(bytes.count)],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
