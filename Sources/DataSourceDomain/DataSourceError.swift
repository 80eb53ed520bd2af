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

        public var message: String {
            switch self {
            case .unauthorized: "Authentication required"
            case .accessDenied: "Insufficient permissions"
            case .datasourceNotFound: "Data source not found"
            case .processingInProgress: "Data source still processing"
            case .processingFailed: "Data source processing failed"
            case .invalidParameters: "Invalid parameters"
            case .storageError: "Storage error"
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
        }
    }
}

extension DataSourceError {
    /// The Claro error body `{error, code, details}`.
    public var claroBody: JSONValue {
        ["error": .string(code.message), "code": .string(code.rawValue), "details": .object(details)]
    }
}
