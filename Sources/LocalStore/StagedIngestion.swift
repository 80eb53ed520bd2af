import DataSourceDomain
import Foundation
import GRDBSQLite

/// Processing for a store that keeps its rows elsewhere (the PostgreSQL store): the same
/// pipeline as the local store (readers, dialect and header detection, type inference,
/// cleaning, issues) writes the typed rows into a scratch SQLite file, which the other store
/// then streams into its own tables. Sharing the pipeline whole is what makes a source's
/// columns, types, stats and issues identical on both stores; the pipeline's insert stage is
/// SQLite's, so the rows pass through this staging file once.
public enum StagedIngestion {
    /// What processing found, as `get` reports it.
    public struct Outcome: Sendable {
        public var columns: [DataColumn]
        public var rowCount: Int
        public var stats: ProcessingStats
        public var issues: [ProcessingIssue]
        /// A spreadsheet's sheet names and the sheet read; nil for other formats.
        public var sheets: SpreadsheetSheets?
    }

    /// The file cannot be processed (the source fails with this message).
    public struct Failure: Error, Sendable {
        public var message: String
        public init(message: String) { self.message = message }
    }

    public struct Cancelled: Error, Sendable {}

    /// One stored value of a staged row; text points into the staging file's current row.
    public enum Cell {
        case null
        case int(Int64)
        case double(Double)
        case text(UnsafeBufferPointer<UInt8>)
    }

    /// Processes `source` into the staging file `staging` (created; the caller removes it).
    public static func process(
        source: URL, contentType: String, options: ParseOptions, staging: URL, workDirectory: URL,
        isCancelled: @escaping () -> Bool, progress: @escaping (_ bytesDone: Int64, _ rows: Int) -> Void
    ) throws -> Outcome {
        do {
            let pipeline = try IngestionPipeline(
                source: source, contentType: contentType, options: options, output: staging, workDirectory: workDirectory,
                isCancelled: isCancelled, progress: progress)
            let result = try pipeline.run()
            return Outcome(columns: result.columns, rowCount: result.rowCount, stats: result.stats, issues: result.issues, sheets: result.sheets)
        } catch is IngestionPipeline.Cancelled {
            throw Cancelled()
        } catch let failure as IngestionFailure {
            throw Failure(message: failure.message)
        }
    }

    /// Calls `body` with each staged row's cells, in file order.
    public static func forEachRow(in staging: URL, columnCount: Int, _ body: (_ cells: [Cell]) throws -> Void) throws {
        var connection: OpaquePointer?
        guard sqlite3_open_v2(staging.path, &connection, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            sqlite3_close_v2(connection)
            throw Failure(message: "cannot read the staged rows")
        }
        defer { sqlite3_close_v2(connection) }
        var statement: OpaquePointer?
        let columns = (0..<columnCount).map { "c\($0)" }.joined(separator: ", ")
        guard sqlite3_prepare_v2(connection, "SELECT \(columns) FROM rows ORDER BY rowid", -1, &statement, nil) == SQLITE_OK else {
            throw Failure(message: "cannot read the staged rows: \(String(cString: sqlite3_errmsg(connection)))")
        }
        defer { sqlite3_finalize(statement) }
        var cells = [Cell](repeating: .null, count: columnCount)
        while true {
            let step = sqlite3_step(statement)
            if step == SQLITE_DONE { return }
            guard step == SQLITE_ROW else { throw Failure(message: "cannot read the staged rows: \(String(cString: sqlite3_errmsg(connection)))") }
            for column in 0..<columnCount {
                let index = Int32(column)
                switch sqlite3_column_type(statement, index) {
                case SQLITE_INTEGER: cells[column] = .int(sqlite3_column_int64(statement, index))
                case SQLITE_FLOAT: cells[column] = .double(sqlite3_column_double(statement, index))
                case SQLITE_NULL: cells[column] = .null
                default:
                    let count = Int(sqlite3_column_bytes(statement, index))
                    let base = sqlite3_column_text(statement, index)
                    cells[column] = .text(UnsafeBufferPointer(start: base, count: count))
                }
            }
            try body(cells)
        }
    }

    /// The content type of an upload that named none, from its name and first bytes.
    public static func guessContentType(fileName: String, prefix: [UInt8]) -> String {
        ContentTypeGuess.guess(fileName: fileName, prefix: prefix)
    }
}
