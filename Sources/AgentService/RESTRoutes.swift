import DataSourceDomain
import JSONKit
import JSONRPC
import Logging

/// How a method is offered on the REST face (§10): an HTTP method and a path under
/// `/api/v2` whose `{name}` segments are params; the other params come from the query string
/// (`GET`, `DELETE`), a JSON body, or a multipart upload.
public struct HTTPRoute: Sendable {
    public enum Verb: String, Sendable {
        case get = "GET", post = "POST", delete = "DELETE"
    }

    public enum Input: Sendable {
        /// The params not in the path, from the query string, converted to their schema's type.
        case query
        /// The params not in the path, as one JSON object (an empty body is `{}`).
        case jsonBody
        /// `multipart/form-data`: a `file` part, stored in a temporary file whose path is given
        /// to the method as `fileParam`, and these params as form fields (JSON for objects).
        case multipartUpload(fileParam: String, fields: [String])
    }

    /// The prefix of every route of the REST face.
    public static let prefix = "/api/v2"

    public var verb: Verb
    /// Relative to `prefix`, e.g. `/datasources/{datasourceId}/data`.
    public var path: String
    public var input: Input
    /// The status of a successful answer.
    public var successStatus: Int

    public init(_ verb: Verb, _ path: String, input: Input = .query, successStatus: Int = 200) {
        self.verb = verb
        self.path = path
        self.input = input
        self.successStatus = successStatus
    }

    /// The full path, e.g. `/api/v2/datasources/{datasourceId}`.
    public var fullPath: String { Self.prefix + path }

    /// The names of the `{name}` segments.
    public var pathParams: [String] {
        path.split(separator: "/").compactMap { segment in
            segment.hasPrefix("{") && segment.hasSuffix("}") ? String(segment.dropFirst().dropLast()) : nil
        }
    }
}

/// One method as the REST face serves it: built from its descriptor, so the params, their
/// schemas and the errors are the JSON-RPC method's own.
public struct RESTOperation: Sendable {
    let descriptor: any DataSourceMethod.Type
    public let route: HTTPRoute

    public var methodName: String { descriptor.name }
    public var access: MethodAccess { descriptor.access }

    /// Builds the method's params from the request's parts. Query values become the type
    /// their schema says (an integer that is not one stays a string, so the strict decoder
    /// reports it exactly as JSON-RPC would); a name given twice, or given both in the path
    /// and the body, is INVALID_PARAMETERS.
    public func params(path: [String: String], query: [(name: String, value: String)], body: JSONValue?) throws -> JSONValue {
        var params = JSONObject()
        switch route.input {
        case .query:
            var seen: [String: [String]] = [:]
            var order: [String] = []
            for (name, value) in query {
                if seen[name] == nil { order.append(name) }
                seen[name, default: []].append(value)
            }
            for name in order {
                let values = seen[name] ?? []
                let schema = descriptor.params.first { $0.name == name }?.schema
                if Self.type(of: schema) == "array" {
                    params[name] = .array(values.map { .string($0) })
                    continue
                }
                guard values.count == 1, let value = values.first else {
                    throw DataSourceError.invalidParameter(name, value: .array(values.map { .string($0) }), reason: "is given more than once")
                }
                params[name] = Self.convert(value, schema: schema)
            }
        case .jsonBody, .multipartUpload:
            switch body {
            case nil, .null?:
                break
            case .object(let object)?:
                params = object
            default:
                throw DataSourceError.invalidParameter("body", value: nil, reason: "must be a JSON object")
            }
        }
        for name in route.pathParams {
            guard let value = path[name] else { continue }
            if params[name] != nil {
                throw DataSourceError.invalidParameter(name, value: params[name], reason: "is given by the path; leave it out of the request")
            }
            params[name] = .string(value)
        }
        return .object(params)
    }

    static func type(of schema: JSONValue?) -> String? {
        schema?["type"]?.stringValue
    }

    static func convert(_ text: String, schema: JSONValue?) -> JSONValue {
        switch type(of: schema) {
        case "integer":
            if let value = Int64(text) { return .int(value) }
        case "boolean":
            if text == "true" { return .bool(true) }
            if text == "false" { return .bool(false) }
        default:
            break
        }
        return .string(text)
    }

    /// The schema of one of the method's params (for form fields).
    public func schema(of param: String) -> JSONValue? {
        descriptor.params.first { $0.name == param }?.schema
    }
}

extension AgentService {
    /// Every method the REST face serves, in the order documents list them.
    public static let restOperations: [RESTOperation] = DataSourceMethods.all.compactMap { method in
        method.http.map { RESTOperation(descriptor: method, route: $0) }
    }

    /// Checks, before a request's body is read, that the key may call the method (the same
    /// guard as JSON-RPC: `--read-only`, then the key). Throws `DataSourceError`.
    public func admit(_ operation: RESTOperation, apiKey: String?) async throws {
        do {
            try await admit(operation.access, method: operation.methodName, key: apiKey)
        } catch let error as DataSourceError {
            throw error
        } catch {
            throw unexpected(error, method: operation.methodName)
        }
    }

    /// Calls a method by name with JSON params, as the key allows: the entry point of the
    /// REST face. Returns the result's JSON bytes; throws `DataSourceError` only.
    public func invoke(method name: String, params: JSONValue, apiKey: String?) async throws -> [UInt8] {
        guard let method = DataSourceMethods.named(name) else {
            throw DataSourceError.invalidParameter("method", value: .string(name), reason: "no such method")
        }
        do {
            return try await method.invoke(params, service: self, key: apiKey).bytes
        } catch let error as DataSourceError {
            throw error
        } catch {
            throw unexpected(error, method: name)
        }
    }

    private func unexpected(_ error: any Error, method: String) -> DataSourceError {
        logger.error("\(method) failed: \(error)")
        return DataSourceError(.storageError, details: ["reason": "the request failed inside the agent"])
    }

    /// The OpenAPI 3.1 document of the REST face, generated from the method descriptors.
    public static func openAPIDocument(version: String) -> JSONValue {
        OpenAPIDocument.make(operations: restOperations, version: version)
    }
}

extension AgentService {
    /// The key check of the REST face's event stream and of its tokens: the read grant a
    /// session needs to be sent `datasources/statusChanged`. Throws `DataSourceError` only.
    public func authorizeEvents(apiKey: String?) async throws {
        do {
            try await authorize(.read, method: "datasources/statusChanged", key: apiKey)
        } catch let error as DataSourceError {
            throw error
        } catch {
            throw unexpected(error, method: "datasources/statusChanged")
        }
    }

    /// Observes the backend's status changes (the REST face's event stream).
    public func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken {
        backend.addStatusObserver(observer)
    }

    public func removeStatusObserver(_ token: ObserverToken) {
        backend.removeObserver(token)
    }
}
