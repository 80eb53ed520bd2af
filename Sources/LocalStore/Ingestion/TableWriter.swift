import Foundation
import GRDBSQLite

/// Bulk-loads rows into a fresh per-source SQLite file through the C API: one prepared
/// statement, one transaction, no journal and no syncs while loading (the file is not
/// visible to anyone until it is complete, synced and renamed into place).
final class TableWriter {
    static let maxColumns = 2000
    private var connection: OpaquePointer?
    private var insert: OpaquePointer?
    let columnCount: Int
    let path: String

    init(path: String, columnCount: Int) throws {
        self.path = path
        self.columnCount = columnCount
        try? FileManager.default.removeItem(atPath: path)
        guard sqlite3_open_v2(path, &connection, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            throw IngestionFailure("cannot create the table file: \(lastError)")
        }
        try execute("""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;
            PRAGMA page_size = 16384; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;
            """)
        let columns = (0..<columnCount).map { "c\($0)" }.joined(separator: ", ")
        try execute("CREATE TABLE rows (\(columns)); BEGIN")
        let placeholders = Array(repeating: "?", count: columnCount).joined(separator: ",")
        guard sqlite3_prepare_v2(connection, "INSERT INTO rows VALUES (\(placeholders))", -1, &insert, nil) == SQLITE_OK else {
            throw IngestionFailure("cannot prepare the insert: \(lastError)")
        }
    }

    var lastError: String { connection.map { String(cString: sqlite3_errmsg($0)) } ?? "no connection" }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(connection, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? lastError
            sqlite3_free(message)
            throw IngestionFailure("SQLite: \(text)")
        }
    }

    // Values are bound by 1-based column index, then `step` inserts the row.
    @inline(__always) func bindNull(_ index: Int32) { sqlite3_bind_null(insert, index) }
    @inline(__always) func bind(_ index: Int32, int value: Int64) { sqlite3_bind_int64(insert, index, value) }
    @inline(__always) func bind(_ index: Int32, double value: Double) { sqlite3_bind_double(insert, index, value) }
    /// The bytes must stay alive until `step`; SQLite does not copy them.
    @inline(__always) func bind(_ index: Int32, borrowedText bytes: UnsafeBufferPointer<UInt8>) {
        let pointer = UnsafeRawPointer(bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!)
        sqlite3_bind_text(insert, index, pointer.assumingMemoryBound(to: CChar.self), Int32(bytes.count), nil)
    }
    @inline(__always) func bind(_ index: Int32, text: String) {
        var text = text
        _ = text.withUTF8 { utf8 in
            sqlite3_bind_text(insert, index, UnsafeRawPointer(utf8.baseAddress!).assumingMemoryBound(to: CChar.self), Int32(utf8.count), Self.transient)
        }
    }

    static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func step() throws {
        let result = sqlite3_step(insert)
        sqlite3_reset(insert)
        guard result == SQLITE_DONE else { throw IngestionFailure("SQLite insert failed: \(lastError)") }
    }

    /// Commits, records the processing issues, and closes; the file is then complete.
    func finish(issues: [(line: Int, column: String?, severity: String, kind: String, reason: String)]) throws {
        sqlite3_finalize(insert)
        insert = nil
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
        if fd >= 0 { fsync(fd); Foundation.close(fd) }
    }

    func close() {
        if let insert { sqlite3_finalize(insert) }
        insert = nil
        if let connection { sqlite3_close_v2(connection) }
        connection = nil
    }

    deinit { close() }
}
