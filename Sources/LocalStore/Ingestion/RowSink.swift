import DataSourceDomain
import GRDBSQLite

/// A processing issue as the pipeline keeps it until the load ends.
typealias IssueRecord = (line: Int, column: String?, severity: String, kind: String, reason: String)

/// Where a load's rows go: the insert stage hands it the convert stage's batches in file
/// order. The local store's sink is the table file (`TableWriter`); a store that keeps its
/// rows elsewhere gets them as `COPY` data (`CopySink`). Everything before the sink
/// (reading, inference, cleaning, issues, the reload when a value does not fit) is the
/// same pipeline for both.
protocol RowSink: AnyObject {
    /// Stores a batch's rows; called on the insert stage's thread.
    func write(_ batch: RowBatch) throws
    /// Every row was written: makes the load complete (with its issues, for a table file).
    func finish(issues: [IssueRecord]) throws
    /// The load stopped (a failure, cancellation, a value that does not fit): nothing it
    /// wrote may become visible. Called once the insert stage has stopped.
    func abandon()
}

extension TableWriter: RowSink {
    func write(_ batch: RowBatch) throws {
        let kinds = batch.kinds
        let payloads = batch.payloads
        let text = UnsafeRawPointer(batch.text).assumingMemoryBound(to: CChar.self)
        let columns = batch.columns
        let group = rowsPerStatement
        var cell = 0
        var textStart = 0
        var row = 0
        while row < batch.rows {
            let rows = batch.rows - row >= group ? group : 1
            let statement = rows > 1 ? insertMany : insertOne
            var bound = SQLITE_OK
            for parameter in 1...Int32(rows * columns) {
                switch kinds[cell] {
                case RowBatch.Kind.int.rawValue: bound |= sqlite3_bind_int64(statement, parameter, payloads[cell])
                case RowBatch.Kind.double.rawValue:
                    bound |= sqlite3_bind_double(statement, parameter, Double(bitPattern: UInt64(bitPattern: payloads[cell])))
                case RowBatch.Kind.text.rawValue:
                    // No copy: the batch's text stays put until the statement has run.
                    let end = Int(payloads[cell])
                    bound |= sqlite3_bind_text(statement, parameter, text + textStart, Int32(end - textStart), nil)
                    textStart = end
                default: bound |= sqlite3_bind_null(statement, parameter)
                }
                cell += 1
            }
            // A value SQLite refuses (too big) would otherwise be stored as null, silently.
            if bound != SQLITE_OK { throw IngestionFailure("SQLite insert failed: \(lastError)") }
            try step(statement)
            row += rows
        }
        startWriteback()
    }

    /// The caller removes the unfinished file.
    func abandon() { close() }
}
