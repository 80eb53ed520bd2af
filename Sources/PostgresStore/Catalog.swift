import DataSourceDomain
import Foundation
import JSONKit
import PostgresNIO

/// One row of `datasource_agent.datasources`, as the methods report it.
struct CatalogRecord: Sendable {
    var id: DataSourceID
    var fileName: String
    var contentType: String
    var fileSize: Int64
    var status: DataSourceStatus
    var uploadedAt: Int64
    var processedAt: Int64?
    var rowCount: Int?
    var cleanedRows: Int?
    var errorCount: Int?
    var warningCount: Int?
    var errorMessage: String?
    var columns: [DataColumn]?
    var estimatedCompletion: Int64?
    var options: ParseOptions?
    var sheets: SpreadsheetSheets?

    /// The columns `decode` reads, in its order.
    static let selection = """
        id, file_name, content_type, file_size, status, uploaded_at, processed_at, row_count, cleaned_rows, error_count, \
        warning_count, error_message, columns_json, estimated_completion, options_json, sheets_json
        """

    /// `offset`: where the selection starts in the row.
    init(row: PostgresRow, offset: Int = 0) throws {
        let all = row.makeRandomAccess()
        let cells = { (index: Int) in all[offset + index] }
        let idText = try cells(0).decode(String.self)
        guard let id = DataSourceID(idText) else { throw DataSourceError(.storageError, details: ["reason": "the catalog holds a malformed id"]) }
        self.id = id
        fileName = try cells(1).decode(String.self)
        contentType = try cells(2).decode(String.self)
        fileSize = try cells(3).decode(Int64.self)
        status = DataSourceStatus(rawValue: try cells(4).decode(String.self)) ?? .failed
        uploadedAt = try cells(5).decode(Int64.self)
        processedAt = try cells(6).decode(Int64?.self)
        rowCount = try cells(7).decode(Int64?.self).map(Int.init)
        cleanedRows = try cells(8).decode(Int64?.self).map(Int.init)
        errorCount = try cells(9).decode(Int64?.self).map(Int.init)
        warningCount = try cells(10).decode(Int64?.self).map(Int.init)
        errorMessage = try cells(11).decode(String?.self)
        columns = try cells(12).decode(String?.self).flatMap { try? JSONDecoder().decode([DataColumn].self, from: Data($0.utf8)) }
        estimatedCompletion = try cells(13).decode(Int64?.self)
        options = try cells(14).decode(String?.self).flatMap { try? JSONDecoder().decode(ParseOptions.self, from: Data($0.utf8)) }
        sheets = try cells(15).decode(String?.self).flatMap { try? JSONDecoder().decode(SpreadsheetSheets.self, from: Data($0.utf8)) }
    }

    var summary: DataSourceSummary {
        DataSourceSummary(
            datasourceId: id, fileName: fileName, contentType: contentType, fileSize: fileSize, status: status,
            uploadedAt: Timestamp(secondsSince1970: uploadedAt), processedAt: processedAt.map(Timestamp.init(secondsSince1970:)))
    }

    func details(issues: [ProcessingIssue]) -> DataSourceDetails {
        DataSourceDetails(
            summary: summary, columns: columns, rowCount: rowCount,
            processingStats: cleanedRows.map { ProcessingStats(cleanedRows: $0, errors: errorCount ?? 0, warnings: warningCount ?? 0) },
            errorMessage: status == .failed ? (errorMessage ?? "processing failed") : nil,
            issues: issues, sheets: status == .completed ? sheets : nil)
    }
}

/// The catalog's reads and the small writes, each one statement or one transaction.
struct CatalogQueries {
    let client: PostgresClient
    let logger: Logger

    func record(_ id: DataSourceID, on connection: PostgresConnection? = nil) async throws -> CatalogRecord? {
        let query: PostgresQuery = "SELECT \(unescaped: CatalogRecord.selection) FROM datasource_agent.datasources WHERE id = \(id.rawValue)"
        let rows = if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
        for try await row in rows { return try CatalogRecord(row: row) }
        return nil
    }

    func issues(_ id: DataSourceID) async throws -> [ProcessingIssue] {
        var issues: [ProcessingIssue] = []
        let rows = try await client.query(
            "SELECT severity, line, column_name, kind, reason FROM datasource_agent.processing_issues WHERE datasource_id = \(id.rawValue) ORDER BY position",
            logger: logger)
        for try await (severity, line, column, kind, reason) in rows.decode((String, Int64, String?, String, String).self) {
            issues.append(ProcessingIssue(severity: ProcessingIssue.Severity(rawValue: severity) ?? .error, line: Int(line), column: column, kind: kind, reason: reason))
        }
        return issues
    }

    func details(_ id: DataSourceID) async throws -> DataSourceDetails? {
        guard let record = try await record(id) else { return nil }
        return record.details(issues: record.status == .processing ? [] : try await issues(id))
    }

    func list(_ query: ListQuery) async throws -> ListPage {
        var conditions: [String] = []
        var bindings = PostgresBindings()
        if let status = query.status {
            bindings.append(status.rawValue)
            conditions.append("status = $\(bindings.count)")
        }
        if let contentType = query.contentType {
            bindings.append(contentType)
            conditions.append("content_type = $\(bindings.count)")
        }
        let whereSQL = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        var total = 0
        for try await count in try await client.query(
            PostgresQuery(unsafeSQL: "SELECT count(*) FROM datasource_agent.datasources \(whereSQL)", binds: bindings), logger: logger
        ).decode(Int.self) { total = count }
        let offset = Pagination.offset(page: query.page, limit: query.limit)
        let sql = "SELECT \(CatalogRecord.selection) FROM datasource_agent.datasources \(whereSQL) ORDER BY uploaded_at DESC, sequence DESC LIMIT \(query.limit) OFFSET \(offset)"
        var summaries: [DataSourceSummary] = []
        for try await row in try await client.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger) {
            summaries.append(try CatalogRecord(row: row).summary)
        }
        return ListPage(dataSources: summaries, pagination: Pagination(page: query.page, limit: query.limit, total: total))
    }
}

extension Encodable {
    /// JSON for a text column (the catalog keeps columns and options as JSON text).
    var catalogJSON: String { (try? JSONEncoder().encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "null" }
}
