import DataSourceDomain
import JSONKit
import JSONRPC

/// What a method does to the store. The read-only guard (and, with keys, the scope a key
/// needs) follows from it, never from a per-handler check.
public enum MethodAccess: String, Sendable {
    case read, write
}

/// How a method is also offered as an MCP tool.
public struct ToolDescription: Sendable {
    public var name: String
    public var title: String
    /// Appended to the method's summary: when and how an AI host should use the tool.
    public var guidance: String
    /// Given a progress token, the call stays open until processing ends (MCP allows
    /// progress only while a request is open).
    public var waitsForProcessing = false
}

/// What a method's handler receives besides its params.
public struct MethodCallContext: Sendable {
    public var progress: (any RequestProgress)?
}

/// One method of the data-source API: its name, params type, documentation, errors, what it
/// does to the store, its MCP tool, and its handler. JSON-RPC dispatch, the MCP tools and the
/// OpenRPC document all iterate over `DataSourceMethods.all`, so a method is added by writing
/// one descriptor.
protocol DataSourceMethod: Sendable {
    associatedtype Params: Decodable & Sendable
    static var name: String { get }
    static var access: MethodAccess { get }
    static var tool: ToolDescription? { get }
    static var summary: String { get }
    static var params: [MethodDescription.Param] { get }
    static var result: JSONValue { get }
    static var errors: [DataSourceError.Code] { get }
    /// How the REST face offers the method (§10); nil: not offered over HTTP.
    static var http: HTTPRoute? { get }
    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON
}

extension DataSourceMethod {
    static var description: MethodDescription {
        MethodDescription(summary: summary, params: params, result: result, errors: errors.map(Schema.error))
    }

    static func register(in table: inout MethodTable, service: AgentService, credential: Credential) {
        table.register(name, params: Params.self) { params, context in
            try await mappingErrors {
                try await service.admit(access, method: name, key: credential.value)
                return try await call(params, backend: service.backend, context: MethodCallContext(progress: context.progress))
            }
        }
    }

    /// The REST face's call: the same guard as JSON-RPC (`--read-only`, then the key), then
    /// the params decoded as strictly as JSON-RPC decodes them. Throws `DataSourceError` only.
    static func invoke(_ params: JSONValue, service: AgentService, key: String?) async throws -> RawJSON {
        try await service.admit(access, method: name, key: key)
        let decoded: Params
        do {
            decoded = try ParamsDecoder.decode(Params.self, from: params, rejectUnknown: true)
        } catch let failure as ParamsDecodingFailure {
            throw failure.dataSourceError
        }
        return try await call(decoded, backend: service.backend, context: MethodCallContext(progress: nil))
    }
}

extension AgentService {
    /// Every face's guard before a method runs: `--read-only` refuses writes, then the key.
    func admit(_ access: MethodAccess, method: String, key: String?) async throws {
        if access == .write, configuration.readOnly {
            throw DataSourceError(.accessDenied, details: ["reason": "the agent runs with --read-only"])
        }
        try await authorize(access, method: method, key: key)
    }

    func authorize(_ access: MethodAccess, method: String, credential: Credential) async throws {
        try await authorize(access, method: method, key: credential.value)
    }

    /// §10: with keys in the store, every data-source method, tool and resource needs one;
    /// a method that writes needs a write key.
    func authorize(_ access: MethodAccess, method: String, key: String?) async throws {
        switch try await backend.grant(forKey: key) {
        case .open, .scoped(.write):
            return
        case .scoped(.read):
            if access == .write {
                throw DataSourceError(.accessDenied, details: ["reason": .string("this key's scope is read; \(method) needs write"), "scope": "read"])
            }
        case .refused:
            throw DataSourceError(.unauthorized, details: [
                "message": .string(key == nil ? "API key missing" : "API key invalid or revoked"),
            ])
        }
    }

    /// Whether a session with this key may see data-source contents (notifications).
    func mayRead(_ credential: Credential) async -> Bool {
        (try? await authorize(.read, method: "datasources/statusChanged", credential: credential)) != nil
    }
}

enum DataSourceMethods {
    /// Every method of the data-source API, in the order documents list them.
    static let all: [any DataSourceMethod.Type] = [
        ListMethod.self, GetMethod.self, DataMethod.self, DeleteMethod.self, DownloadMethod.self, UploadMethod.self,
        QueryMethod.self, ExportMethod.self,
    ]

    static func register(in table: inout MethodTable, service: AgentService, credential: Credential) {
        for method in all { method.register(in: &table, service: service, credential: credential) }
    }

    static func named(_ name: String) -> (any DataSourceMethod.Type)? {
        all.first { $0.name == name }
    }

    static func tool(named name: String) -> (any DataSourceMethod.Type)? {
        all.first { $0.tool?.name == name }
    }

    static var toolNames: [String] { all.compactMap { $0.tool?.name } }
}
