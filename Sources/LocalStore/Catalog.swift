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
    /// JSON array of `{name, type, sampleValues, cleaning?}`.
    var columns: String?
    /// JSON of the upload's ParseOptions.
    var options: String?
    var estimatedCompletion: Int64?
    /// The process that is processing this source, and when it last said so; a source whose
    /// owner is gone is processed again (crash recovery).
    var ownerPid: Int32?
    var heartbeatAt: Int64?
    /// JSON array of the first recorded processing issues.
    var issues: String?

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
        return items.compactMap(DataColumn.init(json:))
    }

    var stats: ProcessingStats? {
        guard let cleanedRows else { return nil }
        return ProcessingStats(cleanedRows: cleanedRows, errors: errorCount ?? 0, warnings: warningCount ?? 0)
    }

    var processingIssues: [ProcessingIssue] {
        guard let issues, case .array(let items)? = try? JSONParser.parse(issues) else { return [] }
        return items.compactMap { item in
            guard let severity = item["severity"]?.stringValue.flatMap(ProcessingIssue.Severity.init(rawValue:)),
                case .int(let line)? = item["line"], let kind = item["kind"]?.stringValue, let reason = item["reason"]?.stringValue
            else { return nil }
            return ProcessingIssue(severity: severity, line: Int(line), column: item["column"]?.stringValue, kind: kind, reason: reason)
        }
    }

    var details: DataSourceDetails {
        DataSourceDetails(
            summary: summary, columns: dataColumns, rowCount: rowCount, processingStats: stats,
            errorMessage: status == DataSourceStatus.failed.rawValue ? (errorMessage ?? "processing failed") : nil,
            issues: processingIssues)
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
            // Deleted metadata (names, sample values) must not linger in free pages.
            try db.execute(sql: "PRAGMA secure_delete = ON")
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
                t.column("ownerPid", .integer)
                t.column("heartbeatAt", .integer)
                t.column("issues", .text)
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
                .limit(query.limit, offset: Pagination.offset(page: query.page, limit: query.limit))
                .fetchAll(db)
            return ListPage(
                dataSources: records.map(\.summary),
                pagination: Pagination(page: query.page, limit: query.limit, total: total))
        }
    }

    func delete(_ id: DataSourceID) throws -> DataSourceRecord? {
        try pool.write { db in
            guard let record = try DataSourceRecord.fetchOne(db, key: id.rawValue) else { return nil }
            try record.delete(db)
            return record
        }
    }

    /// Folds the WAL back into the database file and truncates it, so deleted content is gone
    /// from disk too.
    func checkpoint() throws {
        try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
    }

    func record(_ id: DataSourceID) throws -> DataSourceRecord? {
        try pool.read { db in try DataSourceRecord.fetchOne(db, key: id.rawValue) }
    }

    func insertNew(_ record: DataSourceRecord) throws -> DataSourceRecord {
        try pool.write { db in
            var record = record
            record.sequence = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) + 1 FROM datasource") ?? 1
            try record.insert(db)
            return record
        }
    }

    /// Moves a source out of `processing` and logs the change, in one transaction. Returns
    /// false when the source is gone or no longer processing (deleted meanwhile).
    func finishProcessing(_ id: DataSourceID, update: (inout DataSourceRecord) -> Void) throws -> Bool {
        try pool.write { db in
            guard var record = try DataSourceRecord.fetchOne(db, key: id.rawValue),
                record.status == DataSourceStatus.processing.rawValue
            else { return false }
            update(&record)
            record.ownerPid = nil
            record.heartbeatAt = nil
            record.estimatedCompletion = nil
            try record.update(db)
            try StatusChangeRecord(
                sequence: nil, datasourceId: id.rawValue, previousStatus: DataSourceStatus.processing.rawValue,
                status: record.status, committedAt: Timestamp.now().secondsSince1970
            ).insert(db)
            return true
        }
    }

    func heartbeat(_ id: DataSourceID, estimatedCompletion: Int64?) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE datasource SET heartbeatAt = ?, estimatedCompletion = ? WHERE id = ? AND status = 'processing'",
                arguments: [Timestamp.now().secondsSince1970, estimatedCompletion, id.rawValue])
        }
    }

    /// Claims every source left `processing` by a process that is gone, for this process.
    func claimOrphans(ownerPid: Int32, isAlive: (Int32) -> Bool, staleAfter seconds: Int64) throws -> [DataSourceRecord] {
        try pool.write { db in
            let now = Timestamp.now().secondsSince1970
            let processing = try DataSourceRecord.filter(DataSourceRecord.Columns.status == DataSourceStatus.processing.rawValue).fetchAll(db)
            var claimed: [DataSourceRecord] = []
            for var record in processing {
                let ownerAlive = record.ownerPid.map { $0 != ownerPid && isAlive($0) } ?? false
                let fresh = (record.heartbeatAt ?? 0) > now - seconds
                if ownerAlive && fresh { continue }
                record.ownerPid = ownerPid
                record.heartbeatAt = now
                try record.update(db)
                claimed.append(record)
            }
            return claimed
        }
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
