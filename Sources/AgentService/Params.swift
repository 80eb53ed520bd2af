import Foundation
import DataSourceDomain
import JSONKit

/// Checks shared by every method's params, each failing with INVALID_PARAMETERS whose
/// details name the parameter, the value and what is allowed.
enum Validate {
    static func page(_ value: Int?) throws -> Int {
        guard let value else { return 1 }
        guard value >= 1 else {
            throw DataSourceError.invalidParameter("page", value: .int(Int64(value)), reason: "must be at least 1", extra: ["min": 1])
        }
        guard value <= Pagination.maxPage else {
            throw DataSourceError.invalidParameter(
                "page", value: .int(Int64(value)), reason: "must be at most \(Pagination.maxPage)", extra: ["max": .int(Int64(Pagination.maxPage))])
        }
        return value
    }

    static func limit(_ value: Int?, default defaultValue: Int, max: Int) throws -> Int {
        guard let value else { return defaultValue }
        guard value >= 1 else {
            throw DataSourceError.invalidParameter("limit", value: .int(Int64(value)), reason: "must be at least 1", extra: ["min": 1, "max": .int(Int64(max))])
        }
        guard value <= max else {
            throw DataSourceError.invalidParameter("limit", value: .int(Int64(value)), reason: "must be at most \(max)", extra: ["max": .int(Int64(max))])
        }
        return value
    }

    static func status(_ value: String?) throws -> DataSourceStatus? {
        guard let value else { return nil }
        guard let status = DataSourceStatus(rawValue: value) else {
            throw DataSourceError.invalidParameter(
                "status", value: .string(value), reason: "must be one of processing, completed, failed",
                extra: ["allowed": .array(DataSourceStatus.allCases.map { .string($0.rawValue) })])
        }
        return status
    }

    static func maxAge(_ value: Int?) throws -> Int? {
        guard let value else { return nil }
        guard value >= 0 else {
            throw DataSourceError.invalidParameter("maxAge", value: .int(Int64(value)), reason: "must be at least 0", extra: ["min": 0])
        }
        return value
    }

    /// An id that is not a UUID cannot name a data source, so it is simply not found.
    static func datasourceId(_ value: String) throws -> DataSourceID {
        guard let id = DataSourceID(value) else { throw DataSourceError.notFound(value) }
        return id
    }

    /// An integer parameter in 1...max, or its default.
    static func bounded(_ name: String, _ value: Int?, default defaultValue: Int, max: Int, unit: String = "") throws -> Int {
        guard let value else { return defaultValue }
        guard (1...max).contains(value) else {
            throw DataSourceError.invalidParameter(
                name, value: .int(Int64(value)), reason: "must be between 1 and \(max)\(unit)", extra: ["min": 1, "max": .int(Int64(max))])
        }
        return value
    }
}
