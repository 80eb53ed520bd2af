import DataSourceDomain
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

    public init(version: String, backendName: String, readOnly: Bool) {
        self.version = version
        self.backendName = backendName
        self.readOnly = readOnly
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

    public func makeSessionDelegate(for session: Session) -> any SessionDelegate {
        ServiceSession(service: self, session: session)
    }
}

/// Which protocol the client spoke in `initialize`.
enum ClientFace: Sendable { case jsonRPC, mcp }

final class ServiceSession: SessionDelegate {
    let service: AgentService
    let methods: MethodTable
    private let state = Mutex<State>(State())
    private let sessionRef: Mutex<Session?>

    struct State {
        var face: ClientFace = .jsonRPC
        var observer: ObserverToken?
    }

    init(service: AgentService, session: Session) {
        self.service = service
        self.sessionRef = Mutex(session)
        var table = MethodTable()
        table.paramsErrorMapper = { $0.dataSourceError.rpcError }
        Self.registerDataSourceMethods(in: &table, service: service)
        methods = table
    }

    var methodsAllowedBeforeInitialize: Set<String> { ["ping"] }

    func initialize(params: JSONValue?, context: RequestContext) async throws -> RawJSON {
        let isMCP = params?["protocolVersion"] != nil
        state.withLock { $0.face = isMCP ? .mcp : .jsonRPC }
        startObservingStatus(session: context.session)
        let info: JSONValue = ["name": .string(service.configuration.serverName), "version": .string(service.configuration.version)]
        if isMCP {
            return RawJSON(MCPNegotiation.initializeResult(requested: params?["protocolVersion"]?.stringValue, serverInfo: info))
        }
        return RawJSON([
            "capabilities": [
                "datasources": [
                    "methods": .array(methods.methodNames.map { .string($0) }),
                    "notifications": ["datasources/statusChanged", "$/progress"],
                    "backend": .string(service.configuration.backendName),
                    "readOnly": .bool(service.configuration.readOnly),
                ],
            ],
            "serverInfo": info,
        ])
    }

    private func startObservingStatus(session: Session) {
        let token = service.backend.addStatusObserver { change in
            session.notify(method: "datasources/statusChanged", params: change.json)
        }
        state.withLock { $0.observer = token }
    }

    func didReceiveNotification(method: String, params: JSONValue?, session: Session) {
        // `initialized` and `notifications/initialized` need no action.
    }

    func sessionWillClose(_ session: Session) {
        if let token = state.withLock({ $0.observer }) { service.backend.removeObserver(token) }
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
