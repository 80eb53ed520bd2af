import JSONKit

/// What a handler knows about the request it serves.
public struct RequestContext: Sendable {
    public let id: JSONValue
    public let method: String
    public let session: Session
    /// Present when the request carried a progress token (`workDoneToken`, or MCP's
    /// `_meta.progressToken`).
    public let progress: ProgressReporter?
}

/// Sends progress for one request in the dialect its token came in: LSP `$/progress` with
/// begin/report/end, or MCP `notifications/progress`.
public struct ProgressReporter: Sendable {
    public enum Dialect: Sendable { case lsp, mcp }

    public let token: JSONValue
    public let dialect: Dialect
    let session: Session

    init?(params: JSONValue?, session: Session) {
        if let token = params?["workDoneToken"], Self.isToken(token) {
            self.token = token
            dialect = .lsp
        } else if let token = params?["_meta"]?["progressToken"], Self.isToken(token) {
            self.token = token
            dialect = .mcp
        } else {
            return nil
        }
        self.session = session
    }

    static func isToken(_ value: JSONValue) -> Bool {
        switch value {
        case .string, .int: true
        default: false
        }
    }

    public func begin(title: String, message: String? = nil, percentage: Int? = nil) {
        send(kind: "begin", title: title, message: message, percentage: percentage ?? 0)
    }

    public func report(message: String? = nil, percentage: Int?) {
        send(kind: "report", title: nil, message: message, percentage: percentage)
    }

    public func end(message: String? = nil) {
        send(kind: "end", title: nil, message: message, percentage: 100)
    }

    private func send(kind: String, title: String?, message: String?, percentage: Int?) {
        switch dialect {
        case .lsp:
            var value: JSONObject = ["kind": .string(kind)]
            if let title { value["title"] = .string(title) }
            if let message { value["message"] = .string(message) }
            if let percentage, kind != "end" { value["percentage"] = .int(Int64(percentage)) }
            session.notify(method: "$/progress", params: ["token": token, "value": .object(value)])
        case .mcp:
            var params: JSONObject = ["progressToken": token, "progress": .int(Int64(percentage ?? 0)), "total": 100]
            if let message = message ?? title { params["message"] = .string(message) }
            session.notify(method: "notifications/progress", params: .object(params))
        }
    }
}
