import DataSourceDomain
import Foundation
import Hummingbird
import HummingbirdCore
import JSONKit
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The loopback HTTP listener for signed download links. It serves `GET` and `HEAD` of
/// `/downloads/{id}` (with `Range`) and nothing else, and binds 127.0.0.1 only. As a service
/// of the agent's service group it waits, costing nothing, until the first
/// `datasources/download` asks for its origin; then it runs the HTTP server until the group
/// shuts down.
public final class DownloadServer: DownloadOrigin, Service {
    private let authority: any DownloadAuthority
    private let port: Int
    private let idleTimeout: Duration
    private let logger: Logger
    private let startRequests: AsyncStream<Void>
    private let startContinuation: AsyncStream<Void>.Continuation
    private let state = Mutex<State>(.idle(waiters: []))

    private enum State {
        case idle(waiters: [CheckedContinuation<String, any Error>])
        case running(origin: String)
        case stopped
        case failed(reason: String)
    }

    /// How long a connection may stay open with no request before the listener closes it, so
    /// that idle or half-sent connections cannot pile up.
    public static let defaultIdleTimeout = Duration.seconds(30)

    public init(authority: any DownloadAuthority, port: Int = 0, idleTimeout: Duration = defaultIdleTimeout, logger: Logger) {
        self.authority = authority
        self.port = port
        self.idleTimeout = idleTimeout
        self.logger = logger
        (startRequests, startContinuation) = AsyncStream<Void>.makeStream()
    }

    public func origin() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<String, any Error>? in
                switch state {
                case .running(let origin): return .success(origin)
                case .stopped: return .failure(DownloadServerError.couldNotStart("the download listener has stopped"))
                case .failed(let reason): return .failure(DownloadServerError.couldNotStart(reason))
                case .idle(var waiters):
                    waiters.append(continuation)
                    state = .idle(waiters: waiters)
                    return nil
                }
            }
            if let ready {
                continuation.resume(with: ready)
            } else {
                startContinuation.yield()
            }
        }
    }

    public func run() async throws {
        let requested = await withGracefulShutdownHandler {
            for await _ in startRequests { return true }
            return false
        } onGracefulShutdown: { [startContinuation] in
            startContinuation.finish()
        }
        guard requested, !Task.isShuttingDownGracefully else {
            settle(.stopped)
            return
        }
        let router = Router()
        Self.addLinkRoutes(to: router, authority: authority)
        let app = Application(
            router: router,
            server: Self.http1(idleTimeout: idleTimeout),
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: nil),
            onServerRunning: { [self] channel in
                let origin = "http://127.0.0.1:\(channel.localAddress?.port ?? 0)"
                logger.info("download listener on \(origin)")
                settle(.running(origin: origin))
            },
            logger: logger)
        do {
            // Shut down with the group that runs this service.
            try await app.run()
            settle(.stopped)
        } catch {
            // A listener that cannot run (its port is taken) must not end the group: links
            // are refused with a clear error and everything else goes on until shutdown.
            logger.error("download listener stopped: \(error)")
            settle(.failed(reason: "the download listener could not start on port \(port): \(error)"))
            try? await gracefulShutdown()
        }
    }

    private func settle(_ next: State) {
        let waiters = state.withLock { state -> [CheckedContinuation<String, any Error>] in
            defer { state = next }
            if case .idle(let waiters) = state { return waiters }
            return []
        }
        for waiter in waiters {
            switch next {
            case .running(let origin): waiter.resume(returning: origin)
            case .failed(let reason): waiter.resume(throwing: DownloadServerError.couldNotStart(reason))
            default: waiter.resume(throwing: DownloadServerError.couldNotStart("the download listener has stopped"))
            }
        }
    }

    /// Why no link can be served; the backend turns it into a Claro error.
    public enum DownloadServerError: Error, CustomStringConvertible {
        case couldNotStart(String)
        public var description: String {
            switch self { case .couldNotStart(let reason): reason }
        }
    }

    /// HTTP/1.1 that closes a connection once it has carried no request for `idleTimeout` (a
    /// response being written or a stream being sent is not idle); the REST face uses it too.
    public static func http1(idleTimeout: Duration) -> HTTPServerBuilder {
        let (seconds, attoseconds) = idleTimeout.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        return .http1(configuration: .init(idleTimeout: .nanoseconds(max(1, nanoseconds))))
    }

    /// The signed download and export links, on this listener or on another server's router
    /// (the REST face serves them on its own origin).
    public static func addLinkRoutes<Context: RequestContext>(to router: Router<Context>, authority: any DownloadAuthority) {
        router.get(RouterPath(DownloadLinkShape.routePattern)) { request, context in
            try await serve(request, context: context, authority: authority, headOnly: false)
        }
        router.head(RouterPath(DownloadLinkShape.routePattern)) { request, context in
            try await serve(request, context: context, authority: authority, headOnly: true)
        }
        router.get(RouterPath(DownloadLinkShape.exportRoutePattern)) { request, _ in
            try await serveExport(request, authority: authority)
        }
    }

    public static func serve<Context: RequestContext>(
        _ request: Request, context: Context, authority: any DownloadAuthority, headOnly: Bool
    ) async throws -> Response {
        let query = request.uri.queryParameters
        let decision = await authority.authorize(
            method: "GET", path: request.uri.path,
            expires: query.get(DownloadLinkShape.expiresParameter), signature: query.get(DownloadLinkShape.signatureParameter))
        switch decision {
        case .forbidden(let reason):
            return json(DataSourceError(.accessDenied, details: ["reason": .string(reason)]))
        case .notFound(let id):
            return json(DataSourceError.notFound(id))
        case .granted(let file):
            return try await send(file, request: request, context: context, headOnly: headOnly)
        }
    }

    /// An export's rows, streamed as they are read (no Content-Length: chunked).
    public static func serveExport(_ request: Request, authority: any DownloadAuthority) async throws -> Response {
        let query = request.uri.queryParameters
        let decision = await authority.authorizeExport(
            path: request.uri.path, query: query.get(DownloadLinkShape.queryParameter),
            expires: query.get(DownloadLinkShape.expiresParameter), signature: query.get(DownloadLinkShape.signatureParameter))
        switch decision {
        case .forbidden(let reason):
            return json(DataSourceError(.accessDenied, details: ["reason": .string(reason)]))
        case .notFound(let id):
            return json(DataSourceError.notFound(id))
        case .granted(let stream):
            let headers: HTTPFields = [
                .contentType: stream.contentType,
                .contentDisposition: contentDisposition(stream.fileName),
                .cacheControl: "private, no-store",
            ]
            let body = ResponseBody(asyncSequence: stream.chunks.map { ByteBuffer(bytes: $0) })
            return Response(status: .ok, headers: headers, body: body)
        }
    }

    static func send<Context: RequestContext>(_ file: DownloadableFile, request: Request, context: Context, headOnly: Bool) async throws -> Response {
        var headers: HTTPFields = [
            .contentType: file.contentType,
            .contentDisposition: contentDisposition(file.fileName),
            .acceptRanges: "bytes",
            .cacheControl: "private, no-store",
        ]
        var status = HTTPResponse.Status.ok
        var range: ClosedRange<Int>? = file.size > 0 ? 0...Int(file.size - 1) : nil
        if let header = request.headers[.range] {
            switch byteRange(header, size: Int(file.size)) {
            case .some(.some(let requested)):
                range = requested
                status = .partialContent
                headers[.contentRange] = "bytes \(requested.lowerBound)-\(requested.upperBound)/\(file.size)"
            case .some(.none):
                var unsatisfiable: HTTPFields = [.contentRange: "bytes */\(file.size)"]
                unsatisfiable[.contentLength] = "0"
                return Response(status: .rangeNotSatisfiable, headers: unsatisfiable)
            case .none:
                break  // A Range header we do not understand is ignored, as RFC 9110 allows.
            }
        }
        let length = range.map { $0.count } ?? 0
        headers[.contentLength] = String(length)
        guard !headOnly, let range else {
            return Response(status: status, headers: headers, body: ResponseBody())
        }
        if let reader = file.reader {
            return Response(status: status, headers: headers, body: ResponseBody(asyncSequence: reader(range).map { ByteBuffer(bytes: $0) }))
        }
        let body = try await FileIO().loadFile(path: file.path, range: range, context: context)
        return Response(status: status, headers: headers, body: body)
    }

    /// nil: no usable single range (serve the whole file); .some(nil): unsatisfiable.
    static func byteRange(_ header: String, size: Int) -> ClosedRange<Int>?? {
        let value = header.trimmingCharacters(in: .whitespaces)
        guard value.lowercased().hasPrefix("bytes="), !value.contains(",") else { return nil }
        let spec = value.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let first = parts[0].trimmingCharacters(in: .whitespaces)
        let last = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            guard let suffix = Int(last) else { return nil }
            guard suffix > 0, size > 0 else { return .some(nil) }
            return .some(max(0, size - suffix)...(size - 1))
        }
        guard let start = Int(first) else { return nil }
        guard start < size else { return .some(nil) }
        if last.isEmpty { return .some(start...(size - 1)) }
        guard let end = Int(last), end >= start else { return nil }
        return .some(start...min(end, size - 1))
    }

    /// RFC 6266: an ASCII `filename` fallback and the exact name as `filename*` (RFC 8187).
    static func contentDisposition(_ name: String) -> String {
        let fallback = String(name.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && scalar.value >= 0x20 && scalar != "\"" && scalar != "\\" ? Character(scalar) : "_"
        })
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
        allowed.insert(charactersIn: "!#$&+-.^_`|~")
        let encoded = name.addingPercentEncoding(withAllowedCharacters: allowed) ?? fallback
        return "attachment; filename=\"\(fallback)\"; filename*=UTF-8''\(encoded)"
    }

    /// A Claro error as HTTP: its status and the body `{error, code, details}`.
    public static func json(_ error: DataSourceError) -> Response {
        let bytes = error.claroBody.serialized()
        return Response(
            status: HTTPResponse.Status(code: error.code.httpStatus),
            headers: [.contentType: "application/json", .contentLength: String(bytes.count)],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
