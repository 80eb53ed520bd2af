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
}

final class ServiceSession: SessionDelegate {
    let service: AgentService
    let baseMethods: MethodTable
    let credential: Credential
    var methods: MethodTable { allMethods }
    private let state = Mutex<State>(State())
    private let sessionRef: Mutex<Session?>

    struct State {
        var observer: ObserverToken?
        var subscriptions: Set<String> = []
        var logLevel: MCPLogLevel?
        var lifecycle = LifecycleStateMachine(allowedBeforeInitialize: ["ping"])
        var parentWatch: ParentProcessWatch?
        var delivery: Task<Void, Never>?
    }

    init(service: AgentService, session: Session) {
        self.service = service
        self.sessionRef = Mutex(session)
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
        extraMethods.withLock { $0 = table }
        return table
    }

    // MARK: Lifecycle

    func admit(request method: String, params: JSONValue?, session: Session) -> Admission {
        let action = state.withLock { $0.lifecycle.receiveRequest(method) }
        if method == "initialize", action == .dispatch {
            // Taken here, in stream order, so that requests sent right after `initialize` see
            // it. `initialize` always succeeds; every data-source method checks the key.
            credential.set(params?["initializationOptions"]?["apiKey"]?.stringValue ?? service.configuration.apiKey)
        }
        switch action {
        case .dispatch: return .dispatch
        case .answerNull: return .answer(RawJSON(bytes: Array("null".utf8)))
        case .reject(let error): return .reject(error)
        }
    }

    func didReceiveNotification(method: String, params: JSONValue?, session: Session) {
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
        session.notify(method: "datasources/statusChanged", params: change.json)
        let uri = Self.resourceScheme + change.details.summary.datasourceId.rawValue
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

    func sessionWillClose(_ session: Session) {
        if let token = state.withLock({ $0.observer }) { service.backend.removeObserver(token) }
        state.withLock { $0.delivery }?.cancel()
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
