import Foundation
import GRDBSQLite

/// Bulk-loads rows into a fresh per-source SQLite file through the C API: prepared
/// statements, one transaction, no journal and no syncs while loading (the file is not
/// visible to anyone until it is complete, synced and renamed into place).
final class TableWriter {
    static let maxColumns = 2000
    private var connection: OpaquePointer?
    /// `INSERT` of one row, and of `rowsPerStatement` rows at once (fewer statement
    /// executions: each costs a cursor open, a transaction check and a reset).
    private(set) var insertOne: OpaquePointer?
    private(set) var insertMany: OpaquePointer?
    let rowsPerStatement: Int
    let columnCount: Int
    let path: String

    init(path: String, columnCount: Int) throws {
        self.path = path
        self.columnCount = columnCount
        // At most 32 rows and 4,096 parameters a statement (SQLite allows 32,766).
        rowsPerStatement = max(1, min(32, 4096 / columnCount))
        try? FileManager.default.removeItem(atPath: path)
        // Rows are the user's data: owner-only, like the originals, before SQLite opens it.
        let created = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if created >= 0 { Foundation.close(created) }
        guard sqlite3_open_v2(path, &connection, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            throw IngestionFailure("cannot create the table file: \(lastError)")
        }
        try execute("""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;
            PRAGMA page_size = 16384; PRAGMA cache_size = -8192; PRAGMA temp_store = MEMORY;
            """)
        let columns = (0..<columnCount).map { "c\($0)" }.joined(separator: ", ")
        try execute("CREATE TABLE rows (\(columns)); BEGIN")
        let row = "(" + Array(repeating: "?", count: columnCount).joined(separator: ",") + ")"
        guard sqlite3_prepare_v2(connection, "INSERT INTO rows VALUES \(row)", -1, &insertOne, nil) == SQLITE_OK else {
            throw IngestionFailure("cannot prepare the insert: \(lastError)")
        }
        if rowsPerStatement > 1 {
            let rows = Array(repeating: row, count: rowsPerStatement).joined(separator: ",")
            guard sqlite3_prepare_v2(connection, "INSERT INTO rows VALUES \(rows)", -1, &insertMany, nil) == SQLITE_OK else {
                throw IngestionFailure("cannot prepare the insert: \(lastError)")
            }
        }
    }

    /// The table file, opened again (on first use) to start its writeback early.
    private var writebackDescriptor: Int32?

    /// Asks the kernel to start writing the pages SQLite has written so far, without waiting,
    /// so that the sync when the file is complete has little left to do. (The page cache is
    /// kept small, 8 MiB, so pages reach the kernel as the load goes.)
    func startWriteback() {
        if writebackDescriptor == nil { writebackDescriptor = open(path, O_RDONLY | O_CLOEXEC) }
        guard let descriptor = writebackDescriptor, descriptor >= 0 else { return }
        LinuxFileCalls.startWriteback(descriptor)
    }

    var lastError: String { connection.map { String(cString: sqlite3_errmsg($0)) } ?? "no connection" }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(connection, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? lastError
            sqlite3_free(message)
            throw failure("SQLite: \(text)")
        }
    }

    /// A failure of SQLite; a full disk is said as such, as the store's other errors do.
    private func failure(_ text: String) -> IngestionFailure {
        if let connection, sqlite3_errcode(connection) == SQLITE_FULL {
            return IngestionFailure("the disk is full: the rows could not be stored")
        }
        return IngestionFailure(text)
    }

    /// Lowers SQLite's limit on the size of a value or row (tests make an insert fail with it).
    func limitLength(_ bytes: Int32) { sqlite3_limit(connection, SQLITE_LIMIT_LENGTH, bytes) }

    static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Runs an insert whose values are bound (by 1-based parameter index, text bound without
    /// a copy: its bytes must stay alive until this returns).
    func step(_ statement: OpaquePointer?) throws {
        let result = sqlite3_step(statement)
        sqlite3_reset(statement)
        guard result == SQLITE_DONE else { throw failure("SQLite insert failed: \(lastError)") }
    }

    /// Commits, records the processing issues, and closes; the file is then complete.
    func finish(issues: [IssueRecord]) throws {
        finalizeInserts()
        try execute("""
            CREATE TABLE issues (line INTEGER NOT NULL, columnName TEXT, severity TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL);
            """)
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(connection, "INSERT INTO issues VALUES (?,?,?,?,?)", -1, &statement, nil) == SQLITE_OK else {
            throw IngestionFailure("cannot record issues: \(lastError)")
        }
        for issue in issues {
            sqlite3_bind_int64(statement, 1, Int64(issue.line))
            if let column = issue.column { sqlite3_bind_text(statement, 2, column, -1, Self.transient) } else { sqlite3_bind_null(statement, 2) }
            sqlite3_bind_text(statement, 3, issue.severity, -1, Self.transient)
            sqlite3_bind_text(statement, 4, issue.kind, -1, Self.transient)
            sqlite3_bind_text(statement, 5, issue.reason, -1, Self.transient)
            sqlite3_step(statement)
            sqlite3_reset(statement)
        }
        sqlite3_finalize(statement)
        try execute("COMMIT")
        close()
        // The rows must be on disk before the catalog says they exist.
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw IngestionFailure("cannot reopen the table file to sync it") }
        defer { Foundation.close(fd) }
        guard fsync(fd) == 0 || errno == EINVAL else {
            throw IngestionFailure(errno == ENOSPC || errno == EDQUOT ? "the disk is full: the rows could not be stored" : "the rows could not be synced to disk")
        }
    }

    private func finalizeInserts() {
        if let insertOne { sqlite3_finalize(insertOne) }
        if let insertMany { sqlite3_finalize(insertMany) }
        insertOne = nil
        insertMany = nil
    }

    func close() {
        finalizeInserts()
        if let descriptor = writebackDescriptor, descriptor >= 0 { Foundation.close(descriptor) }
        writebackDescriptor = nil
        if let connection { sqlite3_close_v2(connection) }
        connection = nil
    }

    deinit { close() }
}
