import JSONRPC

/// The LSP lifecycle (which MCP's handshake follows too) as a pure state machine: each
/// message the client sends, in stream order, becomes one action. Kept apart from the
/// connection, as sourcekit-lsp's server handles `initialize` and `exit` itself.
public struct LifecycleStateMachine: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case uninitialized
        case running
        case shutDown
    }

    public enum RequestAction: Sendable, Equatable {
        /// Run the method's handler.
        case dispatch
        /// `shutdown`: answer `null` now.
        case answerNull
        case reject(JSONRPCError)
    }

    public enum NotificationAction: Sendable, Equatable {
        case deliver
        /// Before `initialize` notifications are dropped (LSP).
        case drop
        /// `exit`: leave with this code (0 only after `shutdown`).
        case exit(code: Int32)
    }

    public private(set) var state: State = .uninitialized
    /// Methods a client may call before `initialize` (MCP allows `ping`).
    public let allowedBeforeInitialize: Set<String>

    public init(allowedBeforeInitialize: Set<String> = ["ping"]) {
        self.allowedBeforeInitialize = allowedBeforeInitialize
    }

    public mutating func receiveRequest(_ method: String) -> RequestAction {
        switch (state, method) {
        case (.uninitialized, "initialize"):
            state = .running
            return .dispatch
        case (.running, "initialize"):
            return .reject(.invalidRequest("server is already initialized"))
        case (.shutDown, _):
            return .reject(.invalidRequest("server is shut down"))
        case (.running, "shutdown"):
            state = .shutDown
            return .answerNull
        case (.uninitialized, _) where !allowedBeforeInitialize.contains(method):
            return .reject(.serverNotInitialized)
        default:
            return .dispatch
        }
    }

    public mutating func receiveNotification(_ method: String) -> NotificationAction {
        if method == "exit" { return .exit(code: state == .shutDown ? 0 : 1) }
        return state == .uninitialized ? .drop : .deliver
    }
}
