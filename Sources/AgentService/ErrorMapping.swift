import DataSourceDomain
import JSONKit
import JSONRPC

extension DataSourceError.Code {
    /// The JSON-RPC error code (§6).
    var rpcCode: Int {
        switch self {
        case .unauthorized: -31401
        case .accessDenied: -31403
        case .datasourceNotFound: -31404
        case .processingInProgress: -31409
        case .processingFailed: -31422
        case .invalidParameters: -32602
        case .storageError: -31500
        case .notSupported: -31501
        case .upstreamError: -31502
        case .upstreamUnavailable: -31503
        case .rateLimited: -31429
        }
    }
}

extension DataSourceError {
    /// §6: the JSON-RPC error whose message is the Claro `error` string and whose data is
    /// `{code, details}`.
    var rpcError: JSONRPCError {
        JSONRPCError(
            code: code.rpcCode, message: code.message,
            data: ["code": .string(code.rawValue), "details": .object(details)])
    }
}

extension ParamsDecodingFailure {
    var dataSourceError: DataSourceError {
        .invalidParameter(
            parameter.isEmpty ? "params" : parameter, value: value, reason: reason,
            extra: allowed.map { ["allowed": .array($0.map { .string($0) })] } ?? [:])
    }
}

/// Runs a backend call and turns domain errors into the JSON-RPC errors of §6.
func mappingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as DataSourceError {
        throw error.rpcError
    }
}
