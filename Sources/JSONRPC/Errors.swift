import JSONKit

/// A JSON-RPC error object. Handlers throw it (or an error the method table maps to it).
public struct JSONRPCError: Error, Sendable, Equatable {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public static let parseErrorCode = -32700
    public static let invalidRequestCode = -32600
    public static let methodNotFoundCode = -32601
    public static let invalidParamsCode = -32602
    public static let internalErrorCode = -32603
    public static let serverNotInitializedCode = -32002
    public static let requestCancelledCode = -32800

    public static func parseError(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: parseErrorCode, message: "Parse error", data: ["reason": .string(reason)])
    }

    public static func invalidRequest(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: invalidRequestCode, message: "Invalid Request", data: ["reason": .string(reason)])
    }

    public static func methodNotFound(_ method: String, suggestion: String? = nil) -> JSONRPCError {
        var data: JSONObject = ["method": .string(method)]
        if let suggestion { data["suggestion"] = .string(suggestion) }
        return JSONRPCError(code: methodNotFoundCode, message: "Method not found", data: .object(data))
    }

    public static let serverNotInitialized = JSONRPCError(
        code: serverNotInitializedCode, message: "Server not initialized")

    public static let requestCancelled = JSONRPCError(code: requestCancelledCode, message: "Request cancelled")

    public static func internalError(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: internalErrorCode, message: "Internal error", data: ["reason": .string(reason)])
    }

    public var jsonValue: JSONValue {
        var object: JSONObject = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { object["data"] = data }
        return .object(object)
    }
}

/// A failure to decode a method's params into its parameter type. The method table's owner
/// decides how it is reported, so that it can use its own error vocabulary.
public struct ParamsDecodingFailure: Error, Sendable {
    /// The dotted path of the offending parameter, empty when the params as a whole are wrong.
    public var parameter: String
    public var reason: String
    public var value: JSONValue?
    /// For an unknown parameter: the names its object accepts.
    public var allowed: [String]?

    public init(parameter: String, reason: String, value: JSONValue?, allowed: [String]? = nil) {
        self.parameter = parameter
        self.reason = reason
        self.value = value
        self.allowed = allowed
    }
}
