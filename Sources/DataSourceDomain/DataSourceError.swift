import JSONKit

/// The errors of the Claro data-source API. Each carries the Claro `code`, the Claro `error`
/// string, and `details` naming the offending input.
public struct DataSourceError: Error, Sendable, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case unauthorized = "UNAUTHORIZED"
        case accessDenied = "ACCESS_DENIED"
        case datasourceNotFound = "DATASOURCE_NOT_FOUND"
        case processingInProgress = "PROCESSING_IN_PROGRESS"
        case processingFailed = "PROCESSING_FAILED"
        case invalidParameters = "INVALID_PARAMETERS"
        /// Beyond Claro's table: the store itself failed (a full disk, damaged or unreadable
        /// files). `details.reason` says which, in words; never SQL.
        case storageError = "STORAGE_ERROR"
        /// Beyond Claro's table, remote backend only: the server could not be reached (refused,
        /// reset, timed out, or a 502/503/504 without a Claro body). `details: {baseUrl, reason}`.
        case upstreamUnavailable = "UPSTREAM_UNAVAILABLE"
        /// Remote backend: the server answered something that is not a Claro answer this agent
        /// understands (a 5xx, an unknown code, a malformed body). `details: {status, reason, …}`.
        case upstreamError = "UPSTREAM_ERROR"
        /// Remote backend: the server lacks the endpoint a method needs (the hosted Claro API
        /// documents no query endpoint). `details: {method, endpoint, status, reason}`.
        case notSupported = "NOT_SUPPORTED"
        /// HTTP 429 that did not clear within the agent's retry bound. `details: {retryAfter, …}`.
        case rateLimited = "RATE_LIMITED"

        public var message: String {
            switch self {
            case .unauthorized: "Authentication required"
            case .accessDenied: "Insufficient permissions"
            case .datasourceNotFound: "Data source not found"
            case .processingInProgress: "Data source still processing"
            case .processingFailed: "Data source processing failed"
            case .invalidParameters: "Invalid parameters"
            case .storageError: "Storage error"
            case .upstreamUnavailable: "Upstream server unavailable"
            case .upstreamError: "Upstream server error"
            case .notSupported: "Not supported by the server"
            case .rateLimited: "Too many requests"
            }
        }
    }

    public var code: Code
    public var details: JSONObject

    public init(_ code: Code, details: JSONObject = [:]) {
        self.code = code
        self.details = details
    }

    public static func notFound(_ id: String) -> DataSourceError {
        DataSourceError(.datasourceNotFound, details: ["datasourceId": .string(id)])
    }

    public static func invalidParameter(_ name: String, value: JSONValue?, reason: String, extra: JSONObject = [:]) -> DataSourceError {
        var details: JSONObject = ["parameter": .string(name)]
        if let value { details["value"] = value }
        details["reason"] = .string(reason)
        for (k, v) in extra { details[k] = v }
        return DataSourceError(.invalidParameters, details: details)
    }

    public static func processingInProgress(status: DataSourceStatus, estimatedCompletion: Timestamp?) -> DataSourceError {
        DataSourceError(.processingInProgress, details: [
            "status": .string(status.rawValue),
            "estimatedCompletion": estimatedCompletion.map { .string($0.iso8601) } ?? .null,
        ])
    }

    public static func processingFailed(id: DataSourceID, message: String) -> DataSourceError {
        DataSourceError(.processingFailed, details: ["datasourceId": .string(id.rawValue), "message": .string(message)])
    }
}

extension DataSourceError.Code {
    /// The HTTP status of the Claro REST API: the REST face and the download listener answer
    /// with it, and the remote backend reads it back.
    public var httpStatus: Int {
        switch self {
        case .unauthorized: 401
        case .accessDenied: 403
        case .datasourceNotFound: 404
        case .processingInProgress: 409
        case .processingFailed: 422
        case .invalidParameters: 400
        case .storageError: 500
        case .notSupported: 501
        case .upstreamError: 502
        case .upstreamUnavailable: 503
        case .rateLimited: 429
        }
    }
}

extension DataSourceError {
    /// The Claro error body `{error, code, details}`.
    public var claroBody: JSONValue {
        ["error": .string(code.message), "code": .string(code.rawValue), "details": .object(details)]
    }
}
