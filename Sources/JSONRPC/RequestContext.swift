import JSONKit

/// What a handler knows about the request it serves.
public struct RequestContext: Sendable {
    public let id: JSONValue
    public let method: String
    public let session: Session
    /// Present when the request carried a progress token the service understands.
    public let progress: (any RequestProgress)?

    public init(id: JSONValue, method: String, session: Session, progress: (any RequestProgress)?) {
        self.id = id
        self.method = method
        self.session = session
        self.progress = progress
    }
}

/// Progress of one request, in whatever dialect its token came in.
public protocol RequestProgress: Sendable {
    func begin(title: String, message: String?, percentage: Int?)
    func report(message: String?, percentage: Int?)
    func end(message: String?)
}

extension RequestProgress {
    public func begin(title: String, percentage: Int? = nil) { begin(title: title, message: nil, percentage: percentage) }
    public func report(percentage: Int?) { report(message: nil, percentage: percentage) }
    public func end() { end(message: nil) }
}

/// A progress token is a string or an integer (LSP and MCP alike).
public func isProgressToken(_ value: JSONValue) -> Bool {
    switch value {
    case .string, .int: true
    default: false
    }
}

/// LSP work-done progress: `$/progress {token, value: {kind: begin|report|end, …}}` for a
/// request whose params carry `workDoneToken`.
public struct WorkDoneProgress: RequestProgress {
    public let token: JSONValue
    let session: Session

    public init?(params: JSONValue?, session: Session) {
        guard let token = params?["workDoneToken"], isProgressToken(token) else { return nil }
        self.token = token
        self.session = session
    }

    public func begin(title: String, message: String?, percentage: Int?) {
        send(["kind": "begin", "title": .string(title)], message: message, percentage: percentage ?? 0)
    }

    public func report(message: String?, percentage: Int?) {
        send(["kind": "report"], message: message, percentage: percentage)
    }

    public func end(message: String?) {
        send(["kind": "end"], message: message, percentage: nil)
    }

    private func send(_ value: JSONObject, message: String?, percentage: Int?) {
        var value = value
        if let message { value["message"] = .string(message) }
        if let percentage { value["percentage"] = .int(Int64(percentage)) }
        session.notify(method: "$/progress", params: ["token": token, "value": .object(value)])
    }
}
