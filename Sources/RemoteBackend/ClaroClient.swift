import AsyncHTTPClient
import DataSourceDomain
import Foundation
import JSONKit
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// How the remote backend talks to the server: timeouts and the bounds of its patience with
/// rate limits.
public struct ClaroClientSettings: Sendable {
    /// Time to open a connection.
    public var connectTimeout: Duration = .seconds(5)
    /// Time for a whole request (headers and body) — uploads get `uploadTimeout`.
    public var requestTimeout: Duration = .seconds(30)
    public var uploadTimeout: Duration = .seconds(300)
    /// Longest single wait for `Retry-After` or `X-RateLimit-Reset`; a longer one fails at once
    /// with RATE_LIMITED.
    public var maxRateLimitWait: Duration = .seconds(30)
    /// Requests retried after a 429, at most.
    public var maxRetries = 3
    /// Largest answer read, in bytes.
    public var maxResponseBytes = 256 * 1024 * 1024

    public init() {}
}

/// One HTTP answer.
struct HTTPAnswer: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]

    var json: JSONValue? { try? JSONParser.parse(body) }
}

/// A client of a Claro v2 REST API: `Authorization: Bearer KEY`, JSON in and out, Claro error
/// bodies turned back into `DataSourceError`s, 429 and `X-RateLimit-*` respected.
final class ClaroClient: Sendable {
    let baseURL: String
    private let apiKey: String?
    private let http: HTTPClient
    let settings: ClaroClientSettings
    private let logger: Logger
    /// When the server said its budget is spent (`X-RateLimit-Remaining: 0`), until when.
    private let budgetResetsAt = Mutex<ContinuousClock.Instant?>(nil)

    init(baseURL: String, apiKey: String?, settings: ClaroClientSettings, logger: Logger) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.apiKey = apiKey
        self.settings = settings
        self.logger = logger
        var configuration = HTTPClient.Configuration(
            timeout: .init(connect: Self.timeAmount(settings.connectTimeout), read: Self.timeAmount(settings.requestTimeout)))
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = .init(idleTimeout: .seconds(30))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration, backgroundActivityLogger: logger)
    }

    /// Closes every connection; must be awaited before the process ends.
    func shutdown() async {
        do {
            try await http.shutdown()
        } catch {
            logger.debug("HTTP client shutdown: \(error)")
        }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    // MARK: Requests

    /// `path` is relative to the API root (`/datasources`); query items are percent-encoded.
    func url(_ path: String, query: [(String, String)] = []) -> String {
        var url = baseURL + path
        if !query.isEmpty {
            url += "?" + query.map { Self.encode($0.0) + "=" + Self.encode($0.1) }.joined(separator: "&")
        }
        return url
    }

    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    /// Sends a request, waiting out a spent rate budget first and retrying after 429 within the
    /// settings' bounds. Transport failures are UPSTREAM_UNAVAILABLE.
    func send(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
        contentType: String = "application/json", timeout: Duration? = nil
    ) async throws -> HTTPAnswer {
        var attempt = 0
        while true {
            try await waitForBudget()
            let answer = try await sendOnce(method, url(path, query: query), body: body, contentType: contentType, timeout: timeout ?? settings.requestTimeout)
            noteRateLimit(answer.headers)
            guard answer.status == 429 else { return answer }
            let wait = Self.retryAfter(answer.headers) ?? .seconds(1)
            guard attempt < settings.maxRetries, wait <= settings.maxRateLimitWait else {
                throw rateLimited(answer, retryAfter: wait, attempts: attempt + 1)
            }
            attempt += 1
            logger.info("HTTP 429 from \(method) \(path); retrying in \(wait)")
            try await Task.sleep(for: wait)
        }
    }

    private func sendOnce(_ method: HTTPMethod, _ url: String, body: [UInt8]?, contentType: String, timeout: Duration) async throws -> HTTPAnswer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "datasource-agent")
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(body)
        }
        do {
            let response = try await http.execute(request, timeout: Self.timeAmount(timeout), logger: logger)
            let buffer = try await response.body.collect(upTo: settings.maxResponseBytes)
            return HTTPAnswer(status: Int(response.status.code), headers: response.headers, body: Array(buffer.readableBytesView))
        } catch let error as CancellationError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw unavailable(Self.describe(error))
        }
    }

    func unavailable(_ reason: String) -> DataSourceError {
        DataSourceError(.upstreamUnavailable, details: ["baseUrl": .string(baseURL), "reason": .string(reason)])
    }

    /// Words for a transport failure, without NIO's type names where a plainer word exists.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "could not connect: timed out"
            case .deadlineExceeded, .readTimeout: return "the server did not answer in time"
            case .remoteConnectionClosed: return "the server closed the connection"
            default: break
            }
        }
        let text = String(describing: error)
        if text.contains("connection refused") || text.contains("Connection refused") || text.contains("ECONNREFUSED") {
            return "connection refused"
        }
        return "could not reach the server: \(text)"
    }

    // MARK: Rate limits

    /// `Retry-After` as seconds or an HTTP date.
    static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first(name: "Retry-After")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Double(value), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSinceNow) * 1000))
    }

    /// `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset` (seconds from now, or a Unix time
    /// when it is that large): later requests wait for the reset instead of earning a 429.
    private func noteRateLimit(_ headers: HTTPHeaders) {
        guard let remainingText = headers.first(name: "X-RateLimit-Remaining"), let remaining = Int(remainingText.trimmingCharacters(in: .whitespaces)) else {
            return
        }
        guard remaining <= 0 else {
            budgetResetsAt.withLock { $0 = nil }
            return
        }
        guard let resetText = headers.first(name: "X-RateLimit-Reset"), let reset = Double(resetText.trimmingCharacters(in: .whitespaces)) else { return }
        let seconds = reset > 1_000_000_000 ? reset - Date().timeIntervalSince1970 : reset
        guard seconds > 0 else { return }
        budgetResetsAt.withLock { $0 = .now + .milliseconds(Int64(seconds * 1000)) }
    }

    private func waitForBudget() async throws {
        guard let until = budgetResetsAt.withLock({ $0 }) else { return }
        let wait = until - .now
        guard wait > .zero else {
            budgetResetsAt.withLock { $0 = nil }
            return
        }
        guard wait <= settings.maxRateLimitWait else {
            throw DataSourceError(.rateLimited, details: [
                "reason": .string("the server's rate limit is spent (X-RateLimit-Remaining: 0) for longer than the agent waits"),
                "retryAfter": .int(Int64((Double(wait.components.seconds) + 0.999).rounded(.down))),
            ])
        }
        logger.info("rate limit spent; waiting \(wait) for X-RateLimit-Reset")
        try await Task.sleep(for: wait)
        budgetResetsAt.withLock { current in if current == until { current = nil } }
    }

    private func rateLimited(_ answer: HTTPAnswer, retryAfter: Duration, attempts: Int) -> DataSourceError {
        var details: JSONObject = [
            "retryAfter": .int(retryAfter.components.seconds + (retryAfter.components.attoseconds > 0 ? 1 : 0)),
            "attempts": .int(Int64(attempts)),
        ]
        if let json = answer.json, case .object(let body) = json {
            if let reason = body["error"] { details["serverError"] = reason }
            if let serverDetails = body["details"] { details["serverDetails"] = serverDetails }
        }
        return DataSourceError(.rateLimited, details: details)
    }

    // MARK: Answers

    /// The JSON body of a 2xx answer; a Claro error body becomes its `DataSourceError`.
    func json(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil) async throws -> JSONValue {
        let answer = try await send(method, path, query: query, body: body?.serialized())
        return try decode(answer, method: method, path: path)
    }

    func decode(_ answer: HTTPAnswer, method: HTTPMethod, path: String) throws -> JSONValue {
        guard (200..<300).contains(answer.status) else { throw error(from: answer, method: method, path: path) }
        guard let json = answer.json else {
            throw DataSourceError(.upstreamError, details: [
                "status": .int(Int64(answer.status)), "endpoint": .string("\(method) \(path)"),
                "reason": "the answer is not JSON",
            ])
        }
        return json
    }

    /// A non-2xx answer as the error the agent reports: the server's own Claro error when the
    /// body is one (same code, same details), else one of the upstream codes.
    func error(from answer: HTTPAnswer, method: HTTPMethod, path: String) -> DataSourceError {
        if let json = answer.json, let claro = DataSourceError(claroBody: json) { return claro }
        var details: JSONObject = ["status": .int(Int64(answer.status)), "endpoint": .string("\(method) \(path)")]
        if let json = answer.json, case .object(let body) = json {
            if let code = body["code"] { details["serverCode"] = code }
            if let error = body["error"] { details["serverError"] = error }
            if let serverDetails = body["details"] { details["serverDetails"] = serverDetails }
        } else if !answer.body.isEmpty {
            details["body"] = .string(String(decoding: answer.body.prefix(500), as: UTF8.self))
        }
        switch answer.status {
        case 401:
            // A server that speaks no Claro body still means the key was refused.
            let message: JSONObject = ["message": "the server refused the API key (CLARO_API_KEY)"]
            return DataSourceError(.unauthorized, details: message.merging(details))
        case 403:
            return DataSourceError(.accessDenied, details: details)
        case 502, 503, 504:
            details["reason"] = .string("the server answered HTTP \(answer.status)")
            details["baseUrl"] = .string(baseURL)
            return DataSourceError(.upstreamUnavailable, details: details)
        default:
            details["reason"] = .string("the server answered HTTP \(answer.status) without a Claro error this agent knows")
            return DataSourceError(.upstreamError, details: details)
        }
    }

    /// The error for a method whose endpoint the server lacks.
    func notSupported(method agentMethod: String, endpoint: String, status: Int, note: String) -> DataSourceError {
        DataSourceError(.notSupported, details: [
            "method": .string(agentMethod), "endpoint": .string(endpoint), "status": .int(Int64(status)),
            "reason": .string("the server at \(baseURL) has no \(endpoint) endpoint (HTTP \(status)); \(note)"),
        ])
    }
}

extension JSONObject {
    func merging(_ other: JSONObject) -> JSONObject {
        var merged = self
        for (key, value) in other where merged[key] == nil { merged[key] = value }
        return merged
    }
}
