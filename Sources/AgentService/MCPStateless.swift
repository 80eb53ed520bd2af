import DataSourceDomain
import JSONKit
import JSONRPC

/// MCP 2026-07-28, the stateless revision: no handshake; every request carries its protocol
/// version and the client's capabilities in `_meta`; `server/discover` describes the server;
/// results say their `resultType` (and, when cacheable, `ttlMs` and `cacheScope`); change
/// notifications flow only on `subscriptions/listen` streams, and only the kinds asked for.
/// The same handlers serve every revision: this adds the envelope checks and result fields.
public enum MCPStateless {
    public static let version = "2026-07-28"
    /// Every revision this agent speaks, newest first.
    public static var supportedVersions: [String] { [version] + MCPNegotiation.supportedVersions }

    public static let versionKey = "io.modelcontextprotocol/protocolVersion"
    static let capabilitiesKey = "io.modelcontextprotocol/clientCapabilities"
    static let clientInfoKey = "io.modelcontextprotocol/clientInfo"
    static let serverInfoKey = "io.modelcontextprotocol/serverInfo"
    static let subscriptionIDKey = "io.modelcontextprotocol/subscriptionId"

    public static let unsupportedVersionCode = -32022
    public static let headerMismatchCode = -32020

    /// The client-to-server requests of 2026-07-28 this agent serves (no prompts, no
    /// completions; `initialize`, `ping`, `logging/setLevel` and the `resources/subscribe`
    /// pair are not part of the revision).
    static let methods: Set<String> = [
        "server/discover", "tools/list", "tools/call", "resources/list", "resources/read",
        "resources/templates/list", "subscriptions/listen",
    ]
    /// Results that carry `ttlMs` and `cacheScope`.
    static let cacheableMethods: Set<String> = [
        "server/discover", "tools/list", "resources/list", "resources/read", "resources/templates/list",
    ]

    /// The params key whose value an HTTP request repeats in its `Mcp-Name` header.
    public static let nameBearingParams: [String: String] = ["tools/call": "name", "prompts/get": "name", "resources/read": "uri"]

    /// The JSON-RPC error object of a domain error (the key check of `POST /mcp`).
    public static func errorObject(_ error: DataSourceError) -> JSONValue { error.rpcError.jsonValue }

    /// True when the request uses the stateless envelope: its `_meta` names a protocol version.
    public static func usesEnvelope(_ params: JSONValue?) -> Bool {
        params?["_meta"]?[versionKey] != nil
    }

    /// Checks a request's `_meta`: nil when it is a valid 2026-07-28 envelope. A missing or
    /// malformed key → -32602; a version other than 2026-07-28 → -32022 naming the versions
    /// that `supported` lists.
    static func checkEnvelope(_ params: JSONValue?, supported: [String]) -> JSONRPCError? {
        let meta = params?["_meta"]?.objectValue ?? JSONObject()
        let missing = [versionKey, capabilitiesKey].filter { meta[$0] == nil }
        if !missing.isEmpty {
            return JSONRPCError(
                code: JSONRPCError.invalidParamsCode, message: "Invalid params: _meta lacks " + missing.joined(separator: ", "),
                data: ["missing": .array(missing.map { .string($0) })])
        }
        guard case .string(let requested)? = meta[versionKey] else {
            return invalidMeta(versionKey, "a string")
        }
        guard requested == version else {
            return JSONRPCError(
                code: unsupportedVersionCode, message: "Unsupported protocol version",
                data: ["supported": .array(supported.map { .string($0) }), "requested": .string(requested)])
        }
        guard case .object? = meta[capabilitiesKey] else { return invalidMeta(capabilitiesKey, "an object") }
        // clientInfo is optional in the revision (clients SHOULD send it); when sent it must be an Implementation.
        if let info = meta[clientInfoKey] {
            guard info["name"]?.stringValue != nil, info["version"]?.stringValue != nil else {
                return invalidMeta(clientInfoKey, "an object with name and version")
            }
        }
        return nil
    }

    private static func invalidMeta(_ key: String, _ expected: String) -> JSONRPCError {
        JSONRPCError(
            code: JSONRPCError.invalidParamsCode, message: "Invalid params: \(key) must be \(expected)",
            data: ["parameter": .string("_meta." + key)])
    }

    /// Adds `resultType` (and `ttlMs` + `cacheScope` on cacheable results) to a result object.
    static func decorate(_ result: RawJSON, method: String) -> RawJSON {
        var extra = "\"resultType\":\"complete\""
        if cacheableMethods.contains(method) {
            // Data sources change as they are processed: a cached answer is stale at once, and
            // answers depend on the caller's key.
            extra += ",\"ttlMs\":0,\"cacheScope\":\"private\""
        }
        var bytes = result.bytes
        while let last = bytes.last, last == 0x20 || last == 0x0A || last == 0x0D || last == 0x09 { bytes.removeLast() }
        guard bytes.last == 0x7D else { return result }
        bytes.removeLast()
        let isEmpty = bytes.lastIndex { !(0x20 == $0 || 0x0A == $0 || 0x0D == $0 || 0x09 == $0) }.map { bytes[$0] == 0x7B } ?? true
        if !isEmpty { bytes.append(0x2C) }
        bytes.append(contentsOf: Array(extra.utf8))
        bytes.append(0x7D)
        return RawJSON(bytes: bytes)
    }

    static func capabilities() -> JSONValue {
        [
            "tools": ["listChanged": false],
            "resources": ["subscribe": true, "listChanged": true],
        ]
    }

    /// The `server/discover` result.
    static func discoverResult(serverInfo: JSONValue, supported: [String]) -> JSONValue {
        [
            "supportedVersions": .array(supported.map { .string($0) }),
            "capabilities": capabilities(),
            "instructions": "Tabular data sources (CSV and more): upload, list, query with filters and SQL, export. Resources are datasource://{datasourceId}; listen for their status changes.",
            "resultType": "complete", "ttlMs": 0, "cacheScope": "public",
            "_meta": .object([serverInfoKey: serverInfo]),
        ]
    }

    /// What a `subscriptions/listen` asked for, cut down to what this server delivers.
    struct Filter: Sendable, Equatable {
        var resourcesListChanged = false
        var resourceURIs: Set<String> = []

        /// The honored subset of a requested filter: resource list changes, and updates of
        /// `datasource://` resources. Tools never change and there are no prompts.
        init(requested: JSONValue?) {
            resourcesListChanged = requested?["resourcesListChanged"] == .bool(true)
            for uri in requested?["resourceSubscriptions"]?.arrayValue ?? [] {
                if let uri = uri.stringValue, ServiceSession.resourceID(uri) != nil { resourceURIs.insert(uri) }
            }
        }

        var json: JSONValue {
            var object = JSONObject()
            if resourcesListChanged { object["resourcesListChanged"] = true }
            if !resourceURIs.isEmpty { object["resourceSubscriptions"] = .array(resourceURIs.sorted().map { .string($0) }) }
            return .object(object)
        }
    }

    /// A notification on a listen stream carries the stream's id in `_meta`.
    static func tagged(_ params: JSONObject, subscription id: JSONValue) -> JSONValue {
        var params = params
        params["_meta"] = .object([subscriptionIDKey: id])
        return .object(params)
    }
}
