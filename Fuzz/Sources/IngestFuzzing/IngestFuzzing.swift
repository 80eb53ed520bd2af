import DataSourceDomain
import Foundation
import FuzzSupport
import GRDB
@testable import LocalStore

/// Loads are cancelled at 32,768 rows. Only ODS repeats reach that from a fuzz-sized input: a
/// few KB can legitimately make a million rows, whose load took 74 s under AddressSanitizer,
/// past libFuzzer's timeout, though rows past the first thousands run no code the first ones
/// did not (type inference samples 1,000). The pipeline asks whether to stop every 16,384
/// rows, before it reports them, so the second question of a pass is the first that can stop
/// it past 16,384 rows.
///
/// The cap uses the pipeline's own cancellation. A loading pass reports its rows after each
/// question; a pass that reads without reporting (profiling the whole file again) is stopped
/// at its second question all the same. A PDF asks once a page and reports each page (with
/// no rows), so its reading is never cut.
final class RowCap {
    static let rows = 16_384
    private var rowsReported = 0
    private var questionsSinceReport = 0

    func shouldCancel() -> Bool {
        questionsSinceReport += 1
        return rowsReported >= Self.rows || questionsSinceReport >= 2
    }

    func reported(rows: Int) {
        rowsReported = rows
        questionsSinceReport = 0
    }
}

/// libFuzzer's flags for the upload fuzzers (pass to `runLibFuzzer`): a load frees some of its
/// memory on other threads and into libdispatch's and the libraries' caches, so nearly every
/// input left a few more allocations than frees and paid for libFuzzer's whole-heap leak
/// scan; `ingest` scans every 500 inputs instead (see `PeriodicLeakCheck`).
public let ingestLibFuzzerFlags = PeriodicLeakCheck.libFuzzerFlags

/// libFuzzer calls a target from one thread, one input at a time.
nonisolated(unsafe) var leakCheck = PeriodicLeakCheck(every: 500)

/// Processes `file` as an upload of `contentType` would (the whole pipeline: inspection,
/// reading, type inference, cleaning, the row file), on the calling thread. Refusing the file
/// is fine; crashing is not, and a load that succeeds must have stored the rows it reports.
/// Called once per input, it also runs the periodic leak check.
public func ingest(_ file: URL, contentType: String, options: ParseOptions = ParseOptions()) {
    load(file, contentType: contentType, options: options)
    leakCheck.inputFinished()
}

private func load(_ file: URL, contentType: String, options: ParseOptions) {
    let output = scratchDirectory.appendingPathComponent("rows.sqlite")
    defer { clearScratch() }
    let result: IngestionResult
    do {
        let cap = RowCap()
        let pipeline = try IngestionPipeline(
            source: file, contentType: contentType, options: options, output: output, workDirectory: scratchDirectory,
            isCancelled: cap.shouldCancel, stages: { false }, progress: { _, rows in cap.reported(rows: rows) })
        result = try pipeline.run()
    } catch {
        return
    }
    do {
        let stored = try DatabaseQueue(path: output.path).read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM rows") ?? -1, try db.columns(in: "rows").count)
        }
        if stored.0 != result.rowCount { violated("\(result.rowCount) rows reported, \(stored.0) stored") }
        if stored.1 < result.columns.count { violated("\(result.columns.count) columns reported, \(stored.1) stored") }
    } catch {
        violated("the row file of a successful load cannot be read: \(error)")
    }
}

/// Parse options taken from one byte of the input, so that libFuzzer explores them with the
/// content: a forced delimiter or quote, header on/off/detected, cleaning on/off.
public func options(from byte: UInt8) -> ParseOptions {
    var options = ParseOptions()
    switch byte & 0x03 {
    case 1: options.delimiter = ";"
    case 2: options.delimiter = "\t"
    case 3: options.delimiter = "|"
    default: break
    }
    switch (byte >> 2) & 0x03 {
    case 1: options.header = true
    case 2: options.header = false
    default: break
    }
    if byte & 0x10 != 0 { options.clean = false }
    if byte & 0x20 != 0 { options.quote = "'" }
    if byte & 0x40 != 0 { options.nullValues = ["-", "n/a"] }
    if byte & 0x80 != 0 { options.encoding = "latin-1" }
    return options
}
