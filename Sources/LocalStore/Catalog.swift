import DataSourceDomain
import Foundation
import GRDB
import JSONKit

extension DataSourceStatus: DatabaseValueConvertible {}

extension DataSourceID: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { rawValue.databaseValue }

    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> DataSourceID? {
        String.fromDatabaseValue(dbValue).flatMap(DataSourceID.init)
    }
}

/// One row of the catalog: a data source's metadata and processing outcome.
struct DataSourceRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "datasource"

    var id: DataSourceID
    var fileName: String
    var contentType: String
    var fileSize: Int64
    var status: DataSourceStatus
    var uploadedAt: Int64
    /// Breaks ties between uploads in the same second, so "newest first" is total.
    var sequence: Int64
    var processedAt: Int64?
    var rowCount: Int?
    var cleanedRows: Int?
    var errorCount: Int?
    var warningCount: Int?
    var errorMessage: String?
    /// Stored as JSON (GRDB's Codable columns).
    var columns: [DataColumn]?
    /// The upload's reader options, as JSON.
    var options: ParseOptions?
    var estimatedCompletion: Int64?
    /// The process that is processing this source, and when it last said so; a source whose
    /// owner is gone is processed again (crash recovery).
    var ownerPid: Int32?
    var heartbeatAt: Int64?
    /// The first recorded processing issues, as JSON.
    var issues: [ProcessingIssue]?
    /// A spreadsheet's sheet names and the sheet read, as JSON; nil for other formats.
    var sheets: SpreadsheetSheets?

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let status = Column(CodingKeys.status)
        static let contentType = Column(CodingKeys.contentType)
        static let uploadedAt = Column(CodingKeys.uploadedAt)
        static let sequence = Column(CodingKeys.sequence)
        static let heartbeatAt = Column(CodingKeys.heartbeatAt)
        static let estimatedCompletion = Column(CodingKeys.estimatedCompletion)
    }

    var summary: DataSourceSummary {
        DataSourceSummary(
            datasourceId: id, fileName: fileName, contentType: contentType, fileSize: fileSize, status: status,
            uploadedAt: Timestamp(secondsSince1970: uploadedAt), processedAt: processedAt.map(Timestamp.init(secondsSince1970:)))
    }

    var stats: ProcessingStats? {
        guard let cleanedRows else { return nil }
        return ProcessingStats(cleanedRows: cleanedRows, errors: errorCount ?? 0, warnings: warningCount ?? 0)
    }

    var details: DataSourceDetails {
        DataSourceDetails(
            summary: summary, columns: columns, rowCount: rowCount, processingStats: stats,
            errorMessage: status == .failed ? (errorMessage ?? "processing failed") : nil,
            issues: issues ?? [], sheets: sheets)
    }
}

/// The list-item columns of a catalog row: what `list` reads, without the JSON columns.
struct DataSourceSummaryRecord: Decodable, FetchableRecord, TableRecord, Sendable {
    static let databaseTableName = DataSourceRecord.databaseTableName
    static var databaseSelection: [any SQLSelectable] {
        [Column("id"), Column("fileName"), Column("contentType"), Column("fileSize"), Column("status"), Column("uploadedAt"), Column("processedAt")]
    }

    var id: DataSourceID
    var fileName: String
    var contentType: String
    var fileSize: Int64
    var status: DataSourceStatus
    var uploadedAt: Int64
    var processedAt: Int64?

    var summary: DataSourceSummary {
        DataSourceSummary(
            datasourceId: id, fileName: fileName, contentType: contentType, fileSize: fileSize, status: status,
            uploadedAt: Timestamp(secondsSince1970: uploadedAt), processedAt: processedAt.map(Timestamp.init(secondsSince1970:)))
    }
}

/// What `data` needs to know of a source before it reads rows: no JSON columns.
struct DataSourceStateRecord: Decodable, FetchableRecord, TableRecord, Sendable {
    static let databaseTableName = DataSourceRecord.databaseTableName
    static var databaseSelection: [any SQLSelectable] {
        [Column("status"), Column("rowCount"), Column("errorMessage"), Column("estimatedCompletion")]
    }

    var status: DataSourceStatus
    var rowCount: Int?
    var errorMessage: String?
    var estimatedCompletion: Int64?
}

/// A committed status transition, kept so that every process sharing the store can notice
/// and announce it (see `ChangeWatcher`).
struct StatusChangeRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "statusChange"
    var sequence: Int64?
    var datasourceId: DataSourceID
    var previousStatus: DataSourceStatus
    var status: DataSourceStatus
    var committedAt: Int64

    enum Columns {
        static let sequence = Column(CodingKeys.sequence)
        static let committedAt = Column(CodingKeys.committedAt)
    }
}

/// A catalog this version cannot read as it is.
struct CatalogVersionError: Error, CustomStringConvertible {
    let description: String
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
        // The catalog holds the keys' hashes: it is made owner-only before SQLite creates it
        // (SQLite gives its WAL and shared-memory files the mode of the database file).
        let created = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if created >= 0 { close(created) }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    /// The catalog as it is, for reading only: nothing is created, migrated or written (the
    /// consistency checker must not change the store it reports on). A catalog that an older
    /// version wrote, or a newer one, cannot be read this way.
    init(readingOnly path: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: configuration)
        let (complete, superseded) = try pool.read { db in
            (try Self.migrator.hasCompletedMigrations(db), try Self.migrator.hasBeenSuperseded(db))
        }
        if superseded {
            throw CatalogVersionError(description: "the catalog was written by a newer version of datasource-agent")
        }
        if !complete {
            throw CatalogVersionError(
                description: "the catalog was written by an older version of datasource-agent; start an agent on the store once (it upgrades the catalog), then check it")
        }
    }

    /// How long a change-log entry is kept: far longer than any process takes to notice it.
    static let changeLogRetention: Int64 = 24 * 3600

    /// Migrations name tables and columns as plain strings: they describe the schema as it
    /// was then, whatever the record types become.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "datasource") { t in
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
            try db.create(index: "datasource_newest", on: "datasource", columns: ["uploadedAt", "sequence"])
            try db.create(index: "datasource_status", on: "datasource", columns: ["status"])
            try db.create(table: "statusChange") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("datasourceId", .text).notNull()
                t.column("previousStatus", .text).notNull()
                t.column("status", .text).notNull()
                t.column("committedAt", .integer).notNull()
            }
        }
        // Statuses are checked by the database itself (the table is rebuilt, as SQLite
        // cannot add a CHECK to an existing table); the change log gets an index for pruning.
        migrator.registerMigration("v2-status-checks") { db in
            let statuses = "('processing', 'completed', 'failed')"
            try db.create(table: "datasource_v2") { t in
                t.primaryKey("id", .text)
                t.column("fileName", .text).notNull()
                t.column("contentType", .text).notNull()
                t.column("fileSize", .integer).notNull()
                t.column("status", .text).notNull().check(sql: "status IN \(statuses)")
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
            try db.execute(sql: "INSERT INTO datasource_v2 SELECT * FROM datasource")
            try db.drop(table: "datasource")
            try db.rename(table: "datasource_v2", to: "datasource")
            try db.create(index: "datasource_newest", on: "datasource", columns: ["uploadedAt", "sequence"])
            try db.create(index: "datasource_status", on: "datasource", columns: ["status"])
            try db.create(table: "statusChange_v2") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("datasourceId", .text).notNull()
                t.column("previousStatus", .text).notNull().check(sql: "previousStatus IN \(statuses)")
                t.column("status", .text).notNull().check(sql: "status IN \(statuses)")
                t.column("committedAt", .integer).notNull()
            }
            try db.execute(sql: "INSERT INTO statusChange_v2 SELECT * FROM statusChange")
            try db.drop(table: "statusChange")
            try db.rename(table: "statusChange_v2", to: "statusChange")
            try db.create(index: "statusChange_committedAt", on: "statusChange", columns: ["committedAt"])
        }
        registerKeyMigration(&migrator)
        // Spreadsheets report their sheets in `get`; older rows have none.
        migrator.registerMigration("v4-spreadsheet-sheets") { db in
            try db.alter(table: "datasource") { t in t.add(column: "sheets", .text) }
        }
        return migrator
    }

    func list(_ query: ListQuery) throws -> ListPage {
        try pool.read { db in
            var request = DataSourceSummaryRecord.all()
            if let status = query.status { request = request.filter(DataSourceRecord.Columns.status == status) }
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
            guard let record = try DataSourceRecord.fetchOne(db, key: id) else { return nil }
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
        try pool.read { db in try DataSourceRecord.fetchOne(db, key: id) }
    }

    func queryState(_ id: DataSourceID) throws -> DataSourceStateRecord? {
        try pool.read { db in try DataSourceStateRecord.fetchOne(db, key: id) }
    }

    func insertNew(_ record: DataSourceRecord) throws -> DataSourceRecord {
        try pool.write { db in
            var record = record
            record.sequence = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) + 1 FROM datasource") ?? 1
            try record.insert(db)
            return record
        }
    }

    /// Moves a source out of `processing` (or, for `check --repair`, out of another status in
    /// `from`) and logs the change, in one transaction. Returns false when the source is gone
    /// or no longer in one of those statuses (deleted meanwhile).
    func finishProcessing(
        _ id: DataSourceID, from allowed: Set<DataSourceStatus> = [.processing], update: (inout DataSourceRecord) -> Void
    ) throws -> Bool {
        try pool.write { db in
            guard var record = try DataSourceRecord.fetchOne(db, key: id), allowed.contains(record.status) else { return false }
            let previous = record.status
            update(&record)
            record.ownerPid = nil
            record.heartbeatAt = nil
            record.estimatedCompletion = nil
            try record.update(db)
            try Self.logChange(db, id: id, from: previous, to: record.status)
            return true
        }
    }

    /// Puts a completed source whose rows were lost back to `processing` with no owner, so
    /// that the store's crash recovery processes it again from its original (`check --repair`).
    func requeue(_ id: DataSourceID) throws {
        try pool.write { db in
            guard var record = try DataSourceRecord.fetchOne(db, key: id), record.status == .completed else { return }
            record.status = .processing
            record.processedAt = nil
            record.ownerPid = nil
            record.heartbeatAt = nil
            try record.update(db)
            try Self.logChange(db, id: id, from: .completed, to: .processing)
        }
    }

    private static func logChange(_ db: Database, id: DataSourceID, from previous: DataSourceStatus, to status: DataSourceStatus) throws {
        let now = Timestamp.now().secondsSince1970
        try StatusChangeRecord(sequence: nil, datasourceId: id, previousStatus: previous, status: status, committedAt: now).insert(db)
        // The log only has to outlive the time any process takes to read it.
        try StatusChangeRecord.filter(StatusChangeRecord.Columns.committedAt < now - changeLogRetention).deleteAll(db)
    }

    func heartbeat(_ id: DataSourceID, estimatedCompletion: Int64?) throws {
        try pool.write { db in
            _ = try DataSourceRecord
                .filter(key: id)
                .filter(DataSourceRecord.Columns.status == DataSourceStatus.processing)
                .updateAll(db, [
                    DataSourceRecord.Columns.heartbeatAt.set(to: Timestamp.now().secondsSince1970),
                    DataSourceRecord.Columns.estimatedCompletion.set(to: estimatedCompletion),
                ])
        }
    }

    /// Claims every source left `processing` by a process that is gone, for this process.
    func claimOrphans(ownerPid: Int32, isAlive: (Int32) -> Bool, staleAfter seconds: Int64) throws -> [DataSourceRecord] {
        try pool.write { db in
            let now = Timestamp.now().secondsSince1970
            let processing = try DataSourceRecord.filter(DataSourceRecord.Columns.status == DataSourceStatus.processing).fetchAll(db)
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
                .filter(StatusChangeRecord.Columns.sequence > sequence)
                .order(StatusChangeRecord.Columns.sequence)
                .fetchAll(db)
        }
    }
}
