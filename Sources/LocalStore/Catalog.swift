import DataSourceDomain
import Foundation
import GRDB
import JSONKit

/// One row of the catalog: a data source's metadata and processing outcome.
struct DataSourceRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "datasource"

    var id: String
    var fileName: String
    var contentType: String
    var fileSize: Int64
    var status: String
    var uploadedAt: Int64
    /// Breaks ties between uploads in the same second, so "newest first" is total.
    var sequence: Int64
    var processedAt: Int64?
    var rowCount: Int?
    var cleanedRows: Int?
    var errorCount: Int?
    var warningCount: Int?
    var errorMessage: String?
    /// JSON array of `{name, type, sampleValues}`.
    var columns: String?
    /// JSON of the upload's ParseOptions.
    var options: String?
    var estimatedCompletion: Int64?

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let status = Column(CodingKeys.status)
        static let contentType = Column(CodingKeys.contentType)
        static let uploadedAt = Column(CodingKeys.uploadedAt)
        static let sequence = Column(CodingKeys.sequence)
    }

    var summary: DataSourceSummary {
        DataSourceSummary(
            datasourceId: DataSourceID(id)!, fileName: fileName, contentType: contentType, fileSize: fileSize,
            status: DataSourceStatus(rawValue: status) ?? .failed, uploadedAt: Timestamp(secondsSince1970: uploadedAt),
            processedAt: processedAt.map(Timestamp.init(secondsSince1970:)))
    }

    var dataColumns: [DataColumn]? {
        guard let columns, let value = try? JSONParser.parse(columns), case .array(let items) = value else { return nil }
        return items.compactMap { item in
            guard let name = item["name"]?.stringValue, let type = item["type"]?.stringValue.flatMap(ColumnType.init(rawValue:))
            else { return nil }
            if case .array(let samples)? = item["sampleValues"] {
                return DataColumn(name: name, type: type, sampleValues: samples)
            }
            return DataColumn(name: name, type: type)
        }
    }

    var stats: ProcessingStats? {
        guard let cleanedRows else { return nil }
        return ProcessingStats(cleanedRows: cleanedRows, errors: errorCount ?? 0, warnings: warningCount ?? 0)
    }

    func details(issues: [ProcessingIssue] = []) -> DataSourceDetails {
        DataSourceDetails(
            summary: summary, columns: dataColumns, rowCount: rowCount, processingStats: stats,
            errorMessage: status == DataSourceStatus.failed.rawValue ? (errorMessage ?? "processing failed") : nil,
            issues: issues)
    }
}

/// A committed status transition, kept so that every process sharing the store can notice
/// and announce it (see `ChangeWatcher`).
struct StatusChangeRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "statusChange"
    var sequence: Int64?
    var datasourceId: String
    var previousStatus: String
    var status: String
    var committedAt: Int64
}

/// The catalog database: metadata of every data source, on a GRDB pool in WAL mode so that
/// readers never wait for the writer and several processes can share it.
final class Catalog: Sendable {
    let pool: DatabasePool

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: DataSourceRecord.databaseTableName) { t in
                t.primaryKey("id", .text)
                t.column("fileName", .text).notNull()
                t.column("contentType", .text).notNull()
                t.column("fileSize", .integer).notNull()
                t.column("status", .text).notNull()
                t.column("uploadedAt", .integer).notNull()
                t.column("sequence", .integer).notNull().unique()
                t.column("processedAt", .integer)
                t.column("rowCount", .integer)
                t.column("cleanedRows", .integer)
                t.column("errorCount", .integer)
                t.column("warningCount", .integer)
                t.column("errorMessage", .text)
                t.column("columns", .text)
                t.column("options", .text)
                t.column("estimatedCompletion", .integer)
            }
            try db.create(index: "datasource_newest", on: DataSourceRecord.databaseTableName, columns: ["uploadedAt", "sequence"])
            try db.create(index: "datasource_status", on: DataSourceRecord.databaseTableName, columns: ["status"])
            try db.create(table: StatusChangeRecord.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("datasourceId", .text).notNull()
                t.column("previousStatus", .text).notNull()
                t.column("status", .text).notNull()
                t.column("committedAt", .integer).notNull()
            }
        }
        return migrator
    }

    func list(_ query: ListQuery) throws -> ListPage {
        try pool.read { db in
            var request = DataSourceRecord.all()
            if let status = query.status { request = request.filter(DataSourceRecord.Columns.status == status.rawValue) }
            if let contentType = query.contentType { request = request.filter(DataSourceRecord.Columns.contentType == contentType) }
            let total = try request.fetchCount(db)
            let records = try request
                .order(DataSourceRecord.Columns.uploadedAt.desc, DataSourceRecord.Columns.sequence.desc)
                .limit(query.limit, offset: (query.page - 1) * query.limit)
                .fetchAll(db)
            return ListPage(
                dataSources: records.map(\.summary),
                pagination: Pagination(page: query.page, limit: query.limit, total: total))
        }
    }

    func record(_ id: DataSourceID) throws -> DataSourceRecord? {
        try pool.read { db in try DataSourceRecord.fetchOne(db, key: id.rawValue) }
    }

    func latestChangeSequence() throws -> Int64 {
        try pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) FROM statusChange") ?? 0
        }
    }

    func changes(after sequence: Int64) throws -> [StatusChangeRecord] {
        try pool.read { db in
            try StatusChangeRecord
                .filter(Column("sequence") > sequence)
                .order(Column("sequence"))
                .fetchAll(db)
        }
    }
}
