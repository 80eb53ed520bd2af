import Foundation
import JSONKit

/// A result already serialised to JSON bytes.
public struct RawJSON: Sendable, Encodable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ value: JSONValue) { self.bytes = value.serialized() }

    /// The slow path, used only when a RawJSON is nested inside another Encodable.
    public func encode(to encoder: any Encoder) throws {
        try JSONParser.parse(bytes).encode(to: encoder)
    }
}

/// The declarative map from method names to handlers. Each handler names the Decodable type
/// of its params and returns an Encodable result; decoding failures become -32602.
public struct MethodTable: Sendable {
    public typealias Handler = @Sendable (JSONValue?, RequestContext) async throws -> RawJSON

    private var handlers: [String: Handler] = [:]
    /// Turns a params decoding failure into the error the client sees.
    public var paramsErrorMapper: @Sendable (ParamsDecodingFailure) -> JSONRPCError = { failure in
        var data: JSONObject = ["parameter": .string(failure.parameter), "reason": .string(failure.reason)]
        if let value = failure.value { data["value"] = value }
        if let allowed = failure.allowed { data["allowed"] = .array(allowed.map { .string($0) }) }
        return JSONRPCError(code: JSONRPCError.invalidParamsCode, message: "Invalid params", data: .object(data))
    }

    /// What a method does with a parameter its params type does not have.
    public enum UnknownParams: Sendable {
        /// Answer -32602 naming it: a misspelt name must not be silently ignored.
        case reject
        /// Ignore it: for protocols (MCP) whose requests grow fields the agent need not know.
        case ignore
    }

    /// Fields a protocol adds to any request's params (LSP's progress tokens, MCP's `_meta`).
    public static let protocolParams: Set<String> = ["workDoneToken", "partialResultToken", "_meta"]

    public init() {}

    public func handler(for method: String) -> Handler? { handlers[method] }

    public var methodNames: [String] { handlers.keys.sorted() }

    public mutating func register<Params: Decodable & Sendable, Result: Encodable & Sendable>(
        _ method: String,
        params: Params.Type,
        unknownParams: UnknownParams = .reject,
        _ body: @escaping @Sendable (Params, RequestContext) async throws -> Result
    ) {
        handlers[method] = { [paramsErrorMapper] rawParams, context in
            let params: Params
            do {
                params = try ParamsDecoder.decode(Params.self, from: rawParams, rejectUnknown: unknownParams == .reject)
            } catch let failure as ParamsDecodingFailure {
                throw paramsErrorMapper(failure)
            }
            return try ResultEncoder.encode(try await body(params, context))
        }
    }

    /// A handler that takes the params as they came, for methods whose params have no fixed shape.
    public mutating func registerRaw(_ method: String, _ body: @escaping Handler) {
        handlers[method] = body
    }
}

/// A method's documentation: its params and result as JSON Schemas.
public struct MethodDescription: Sendable {
    public struct Param: Sendable {
        public var name: String
        public var schema: JSONValue
        public var required: Bool
        public var description: String

        public init(_ name: String, _ schema: JSONValue, required: Bool = false, _ description: String) {
            self.name = name
            self.schema = schema
            self.required = required
            self.description = description
        }
    }

    public var summary: String
    public var params: [Param]
    public var result: JSONValue
    /// Error codes the method may answer with, as `{code, message}` objects.
    public var errors: [JSONValue]

    public init(summary: String, params: [Param], result: JSONValue, errors: [JSONValue] = []) {
        self.summary = summary
        self.params = params
        self.result = result
        self.errors = errors
    }

    /// The params as one object schema (the shape MCP tools take).
    public var paramsObjectSchema: JSONValue {
        var properties = JSONObject()
        for param in params {
            var schema = param.schema.objectValue ?? JSONObject()
            if schema["description"] == nil { schema["description"] = .string(param.description) }
            properties[param.name] = .object(schema)
        }
        return [
            "type": "object",
            "properties": .object(properties),
            "required": .array(params.filter(\.required).map { .string($0.name) }),
            "additionalProperties": false,
        ]
    }
}

/// Params that a method ignores.
public struct NoParams: Decodable, Sendable {}

enum ResultEncoder {
    static func encode<T: Encodable>(_ value: T) throws -> RawJSON {
        if let raw = value as? RawJSON { return raw }
        if let json = value as? JSONValue { return RawJSON(json) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return RawJSON(bytes: Array(try encoder.encode(value)))
    }
}

public enum ParamsDecoder {
    public static func decode<T: Decodable>(_ type: T.Type, from params: JSONValue?, rejectUnknown: Bool = false) throws -> T {
        let params = params ?? .object(JSONObject())
        if case .array = params {
            throw ParamsDecodingFailure(parameter: "", reason: "params must be an object, not an array", value: nil)
        }
        guard case .object = params else {
            throw ParamsDecodingFailure(parameter: "", reason: "params must be an object", value: nil)
        }
        do {
            return try JSONValueDecoder(rejectingUnknownKeysExcept: rejectUnknown ? MethodTable.protocolParams : nil).decode(T.self, from: params)
        } catch let error as DecodingError {
            throw failure(from: error, params: params)
        } catch let unknown as UnknownKeyError {
            let name = (unknown.path + [unknown.key]).joined(separator: ".")
            var reason = "unknown parameter"
            if let close = Suggestions.closest(to: unknown.key, in: unknown.allowed) { reason += "; did you mean '\(close)'?" }
            throw ParamsDecodingFailure(parameter: name, reason: reason, value: nil, allowed: unknown.allowed)
        }
    }

    static func failure(from error: DecodingError, params: JSONValue) -> ParamsDecodingFailure {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        func value(at keys: [any CodingKey]) -> JSONValue? {
            var current: JSONValue? = params
            for key in keys {
                if let index = key.intValue, case .array(let a)? = current {
                    current = index < a.count ? a[index] : nil
                } else {
                    current = current?[key.stringValue]
                }
            }
            return current
        }
        switch error {
        case .keyNotFound(let key, let context):
            return ParamsDecodingFailure(parameter: path(context.codingPath + [key]), reason: "is required", value: nil)
        case .typeMismatch(let type, let context):
            return ParamsDecodingFailure(
                parameter: path(context.codingPath), reason: "must be \(describe(type))", value: value(at: context.codingPath))
        case .valueNotFound(let type, let context):
            return ParamsDecodingFailure(
                parameter: path(context.codingPath), reason: "must be \(describe(type)), not null", value: .null)
        case .dataCorrupted(let context):
            return ParamsDecodingFailure(
                parameter: path(context.codingPath), reason: context.debugDescription, value: value(at: context.codingPath))
        @unknown default:
            return ParamsDecodingFailure(parameter: "", reason: "\(error)", value: nil)
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "a boolean"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a valid value"
        }
    }
}
