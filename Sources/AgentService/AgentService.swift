import DataSourceDomain
import Dispatch
import Foundation
import JSONKit
import JSONRPC
import Logging
import Synchronization

/// Settings of the service that do not depend on the backend.
public struct ServiceConfiguration: Sendable {
    public var serverName = "datasource-agent"
    public var version: String
    public var backendName: String
    public var readOnly: Bool
    /// Adds `debug/sleep`, a request that takes as long as asked, for tests of concurrency,
    /// cancellation and draining. Off unless DATASOURCE_AGENT_DEBUG_METHODS=1.
    public var debugMethods: Bool
    /// The key a session presents when its `initialize` carries none
    /// (`DATASOURCE_AGENT_API_KEY`).
    public var apiKey: String?

    public init(version: String, backendName: String, readOnly: Bool, debugMethods: Bool = false, apiKey: String? = nil) {
        self.version = version
        self.backendName = backendName
        self.readOnly = readOnly
        self.debugMethods = debugMethods
        self.apiKey = apiKey
    }
}

/// Maps JSON-RPC methods and notifications onto a backend. One service serves every
/// session of the process; each session gets its own `ServiceSession`.
public final class AgentService: Sendable {
    let backend: any DataSourceBackend
    let configuration: ServiceConfiguration
    let logger: Logger

    public init(backend: any DataSourceBackend, configuration: ServiceConfiguration, logger: Logger) {
        self.backend = backend
        self.configuration = configuration
        self.logger = logger
    }

    /// The OpenRPC description of every method, generated from the method descriptors.
    public static func openRPCDocument(version: String) -> JSONValue {
        OpenRPCDocument.make(methods: DataSourceMethods.all, version: version)
    }

    public func makeSessionDelegate(for session: Session) -> any SessionDelegate {
        ServiceSession(service: self, session: session)
    }

    /// How a `POST /mcp` request is served: in the stateless 2026-07-28 envelope, or as a
    /// 2025-11-25 Streamable HTTP request of a host that made a handshake (no session ids).
    public enum MCPHTTPMode: Sendable {
        case stateless, handshake
    }

    /// A session for one HTTP request: its key is the request's Bearer key, its era is set
    /// (no handshake state survives between requests; a handshake-era request other than
    /// `initialize` runs as if after one).
    public func makeMCPHTTPDelegate(for session: Session, apiKey: String?, mode: MCPHTTPMode, method: String) -> any SessionDelegate {
        let delegate = ServiceSession(service: self, session: session)
        delegate.prepareForHTTP(apiKey: apiKey, mode: mode, method: method, session: session)
        return delegate
    }

    /// The read check of `POST /mcp` before anything runs: a missing or unknown key is
    /// UNAUTHORIZED (HTTP 401). Throws `DataSourceError` only.
    public func authorizeMCP(apiKey: String?) async throws {
        try await authorizeEvents(apiKey: apiKey)
    }
}

final class ServiceSession: SessionDelegate {
    let service: AgentService
    let baseMethods: MethodTable
    let credential: Credential
    var methods: MethodTable { allMethods }
    private let state = Mutex<State>(State())

    struct State {
        var observer: ObserverToken?
        var subscriptions: Set<String> = []
        var logLevel: MCPLogLevel?
        var lifecycle = LifecycleStateMachine(allowedBeforeInitialize: ["ping"])
        var parentWatch: ParentProcessWatch?
        var delivery: Task<Void, Never>?
        var era: Era = .undecided
        /// Set for an HTTP request: the key is the Bearer key, and every revision stays on offer.
        var overHTTP = false
        /// Open `subscriptions/listen` streams (2026-07-28), by the listen request's id.
        var listens: [JSONValue: Listen] = [:]
    }

    /// Which MCP revision family this stream speaks, settled by its first MCP request:
    /// `initialize` makes it a handshake session (2025-06-18, 2025-11-25, and the agent's own
    /// JSON-RPC protocol); a request with the 2026-07-28 `_meta` envelope makes it stateless.
    enum Era: Sendable, Equatable {
        case undecided, handshake, stateless
    }

    struct Listen: Sendable {
        var filter: MCPStateless.Filter
        var end: AsyncStream<Void>.Continuation
    }

    init(service: AgentService, session: Session) {
        self.service = service
        var table = MethodTable()
        table.paramsErrorMapper = { $0.dataSourceError.rpcError }
        let credential = Credential()
        self.credential = credential
        DataSourceMethods.register(in: &table, service: service, credential: credential)
        if service.configuration.debugMethods { Self.registerDebugMethods(in: &table) }
        // MCP's liveness check; allowed before initialize too.
        table.register("ping", params: NoParams.self, unknownParams: .ignore) { _, _ in JSONValue.object([:]) }
        baseMethods = table
    }

    /// The MCP methods and `initialize` need `self`, so they are added once `self` exists;
    /// `methods` is read only after `attach`.
    private let extraMethods = Mutex<MethodTable?>(nil)

    var allMethods: MethodTable {
        if let table = extraMethods.withLock({ $0 }) { return table }
        var table = baseMethods
        table.registerRaw("initialize") { [self] params, context in try await initialize(params: params, context: context) }
        registerMCPMethods(in: &table)
        registerStatelessMethods(in: &table)
        extraMethods.withLock { $0 = table }
        return table
    }

    func prepareForHTTP(apiKey: String?, mode: AgentService.MCPHTTPMode, method: String, session: Session) {
        credential.set(apiKey)
        state.withLock { state in
            state.overHTTP = true
            state.era = mode == .stateless ? .stateless : .handshake
            if mode == .handshake, method != "initialize" { _ = state.lifecycle.receiveRequest("initialize") }
        }
        if mode == .stateless { startObservingStatus(session: session) }
    }

    // MARK: Lifecycle

    func admit(request method: String, params: JSONValue?, session: Session) -> Admission {
        let era = state.withLock { $0.era }
        if era == .stateless || (era == .undecided && (MCPStateless.usesEnvelope(params) || method == "server/discover")) {
            return admitStateless(method: method, params: params, era: era, session: session)
        }
        let action = state.withLock { $0.lifecycle.receiveRequest(method) }
        let overHTTP = state.withLock { $0.overHTTP }
        if method == "initialize", action == .dispatch, !overHTTP {
            // Taken here, in stream order, so that requests sent right after `initialize` see
            // it. `initialize` always succeeds; every data-source method checks the key.
            credential.set(params?["initializationOptions"]?["apiKey"]?.stringValue ?? service.configuration.apiKey)
        }
        if method == "initialize", action == .dispatch {
            state.withLock { $0.era = .handshake }
        }
        if era == .handshake, method == "server/discover" || method == "subscriptions/listen" {
            // server/discover and subscriptions/listen are not part of the negotiated revision.
            return .reject(.methodNotFound(method))
        }
        switch action {
        case .dispatch: return .dispatch
        case .answerNull: return .answer(RawJSON(bytes: Array("null".utf8)))
        case .reject(let error): return .reject(error)
        }
    }

    func didReceiveNotification(method: String, params: JSONValue?, session: Session) {
        if state.withLock({ $0.era }) == .stateless {
            // 2026-07-28 has one client notification: cancellation (the request, or a listen
            // stream, ends without a response).
            if method == "notifications/cancelled", let id = params?["requestId"] {
                session.cancel(id: id, answer: false)
            }
            return
        }
        switch state.withLock({ $0.lifecycle.receiveNotification(method) }) {
        case .exit(let code):
            session.requestExit(code: code)
        case .drop:
            break
        case .deliver:
            // MCP's cancellation: the cancelled request gets no response at all.
            if method == "notifications/cancelled", let id = params?["requestId"] {
                session.cancel(id: id, answer: false)
            }
            // `initialized` and `notifications/initialized` need no action.
        }
    }

    func progressReporter(for params: JSONValue?, session: Session) -> (any RequestProgress)? {
        WorkDoneProgress(params: params, session: session) ?? MCPProgress(params: params, session: session)
    }

    func subscribe(_ uri: String, _ on: Bool) {
        state.withLock { state in
            if on { state.subscriptions.insert(uri) } else { state.subscriptions.remove(uri) }
        }
    }

    func setLogLevel(_ level: MCPLogLevel) {
        state.withLock { $0.logLevel = level }
    }

    func initialize(params: JSONValue?, context: RequestContext) async throws -> RawJSON {

        if case .int(let pid)? = params?["processId"] {
            let watch = ParentProcessWatch(pid: pid_t(truncatingIfNeeded: pid)) { [logger = service.logger, session = context.session] in
                logger.info("parent process \(pid) is gone; exiting")
                session.requestExit(code: 1)
            }
            state.withLock { $0.parentWatch = watch }
        }
        let isMCP = params?["protocolVersion"] != nil
        startObservingStatus(session: context.session)
        let info: JSONValue = ["name": .string(service.configuration.serverName), "version": .string(service.configuration.version)]
        if isMCP {
            return RawJSON(MCPNegotiation.initializeResult(requested: params?["protocolVersion"]?.stringValue, serverInfo: info))
        }
        return RawJSON([
            "capabilities": [
                "datasources": [
                    "methods": .array(DataSourceMethods.all.map { $0.name }.sorted().map { .string($0) }),
                    "notifications": ["datasources/statusChanged", "$/progress"],
                    "backend": .string(service.configuration.backendName),
                    "readOnly": .bool(service.configuration.readOnly),
                ],
            ],
            "serverInfo": info,
        ])
    }

    private func startObservingStatus(session: Session) {
        // Changes go through one ordered stream, so that each can wait for the key check
        // (§10: a session without a valid key learns nothing of the store) and still arrive
        // in the order they were committed.
        let (changes, continuation) = AsyncStream<StatusChange>.makeStream()
        let token = service.backend.addStatusObserver { change in continuation.yield(change) }
        let delivery = Task { [self, service, credential] in
            for await change in changes {
                guard await service.mayRead(credential) else { continue }
                announce(change, to: session)
            }
        }
        state.withLock { $0.delivery = delivery }
        state.withLock { $0.observer = token }
    }

    private func announce(_ change: StatusChange, to session: Session) {
        let uri = Self.resourceScheme + change.details.summary.datasourceId.rawValue
        if state.withLock({ $0.era }) == .stateless {
            // Only listen streams that asked for this resource hear of it. A status change also
            // changes the resource list (each entry names its status), and it is how uploads made
            // by other requests or processes on the store are heard of.
            let listens = state.withLock { $0.listens }
            for (id, listen) in listens where listen.filter.resourceURIs.contains(uri) {
                session.notify(method: "notifications/resources/updated", params: MCPStateless.tagged(["uri": .string(uri)], subscription: id))
            }
            for (id, listen) in listens where listen.filter.resourcesListChanged {
                session.notify(method: "notifications/resources/list_changed", params: MCPStateless.tagged([:], subscription: id))
            }
            return
        }
        session.notify(method: "datasources/statusChanged", params: change.json)
        let (subscribed, level) = state.withLock { ($0.subscriptions.contains(uri), $0.logLevel) }
        if subscribed {
            session.notify(method: "notifications/resources/updated", params: ["uri": .string(uri)])
        }
        if let level, level.rank <= MCPLogLevel.info.rank {
            session.notify(method: "notifications/message", params: [
                "level": "info", "logger": "datasource-agent",
                "data": .string("\(change.details.summary.fileName) is \(change.details.summary.status.rawValue)"),
            ])
        }
    }

    /// Sent after an upload or delete through a tool: to a handshake session always (as
    /// before), to a stateless one only on listen streams that asked for resource list changes.
    func announceListChanged(session: Session) {
        guard state.withLock({ $0.era }) == .stateless else {
            session.notify(method: "notifications/resources/list_changed", params: .object([:]))
            return
        }
        let listeners = state.withLock { $0.listens.filter { $0.value.filter.resourcesListChanged }.map(\.key) }
        for id in listeners {
            session.notify(method: "notifications/resources/list_changed", params: MCPStateless.tagged([:], subscription: id))
        }
    }

    /// Admission of a request on a stateless (2026-07-28) stream: the envelope is checked on
    /// every request; the first valid one settles the stream's era.
    private func admitStateless(method: String, params: JSONValue?, era: Era, session: Session) -> Admission {
        // Before the era is settled an unknown version may still be served by the handshake.
        let overHTTP = state.withLock { $0.overHTTP }
        let supported = era == .stateless && !overHTTP ? [MCPStateless.version] : MCPStateless.supportedVersions
        if method == "initialize" {
            return .reject(JSONRPCError(
                code: MCPStateless.unsupportedVersionCode, message: "Unsupported protocol version",
                data: ["supported": .array(supported.map { .string($0) }), "requested": params?["protocolVersion"] ?? .null]))
        }
        if let error = MCPStateless.checkEnvelope(params, supported: supported) { return .reject(error) }
        let allowed = MCPStateless.methods.contains(method) || (service.configuration.debugMethods && method.hasPrefix("debug/"))
        guard allowed else { return .reject(.methodNotFound(method)) }
        if era == .undecided {
            let settled = state.withLock { state -> Bool in
                guard state.era == .undecided else { return false }
                state.era = .stateless
                return true
            }
            if settled {
                // No handshake carries a key: the session's key is DATASOURCE_AGENT_API_KEY.
                credential.set(service.configuration.apiKey)
                startObservingStatus(session: session)
            }
        }
        return .dispatch
    }

    /// `subscriptions/listen`: acknowledges the honored filter, then stays open, delivering the
    /// asked-for notifications tagged with its id, until the client cancels it (no response)
    /// or the agent stops (a result closes the stream gracefully).
    func listen(params: JSONValue?, context: RequestContext) async throws -> RawJSON {
        try await mappingErrors { try await service.authorize(.read, method: "subscriptions/listen", credential: credential) }
        let filter = MCPStateless.Filter(requested: params?["notifications"])
        let id = context.id
        let (ended, end) = AsyncStream<Void>.makeStream()
        state.withLock { state in
            state.listens[id] = Listen(filter: filter, end: end)
            // Under the lock, so that no event of this stream can be written before its acknowledgment.
            context.session.notify(method: "notifications/subscriptions/acknowledged", params: MCPStateless.tagged(
                ["notifications": filter.json], subscription: id))
        }
        // Read after registering: a stop from now on finishes this stream's `end`.
        let closing = context.session.isClosing
        defer { _ = state.withLock { $0.listens.removeValue(forKey: id) } }
        if !closing {
            await withTaskCancellationHandler {
                for await _ in ended {}
            } onCancel: {
                end.finish()
            }
        }
        try Task.checkCancellation()
        return RawJSON(JSONValue.object(["resultType": "complete", "_meta": .object([MCPStateless.subscriptionIDKey: id])]))
    }

    func sessionWillStopAdmitting(_ session: Session) {
        // Listen streams end gracefully, so that draining does not wait for them.
        let ends = state.withLock { $0.listens.values.map(\.end) }
        ends.forEach { $0.finish() }
    }

    func sessionWillClose(_ session: Session) {
        if let token = state.withLock({ $0.observer }) { service.backend.removeObserver(token) }
        state.withLock { $0.delivery }?.cancel()
        // The MCP methods' handlers hold self: dropping the table ends that cycle.
        extraMethods.withLock { $0 = MethodTable() }
    }
}

enum MCPNegotiation {
    static let supportedVersions = ["2025-11-25", "2025-06-18"]

    static func initializeResult(requested: String?, serverInfo: JSONValue) -> JSONValue {
        let version = requested.flatMap { supportedVersions.contains($0) ? $0 : nil } ?? supportedVersions[0]
        return [
            "protocolVersion": .string(version),
            "capabilities": [
                "tools": ["listChanged": false],
                "resources": ["subscribe": true, "listChanged": true],
                "logging": [:],
            ],
            "serverInfo": serverInfo,
        ]
    }
}

/// The API key a session presented, read by every data-source method.
final class Credential: Sendable {
    private let key = Mutex<String?>(nil)
    func set(_ value: String?) { key.withLock { $0 = value } }
    var value: String? { key.withLock { $0 } }
}
