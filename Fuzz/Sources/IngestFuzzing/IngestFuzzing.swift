import DataSourceDomain
import Foundation
import FuzzSupport
import GRDB
@testable import LocalStore

/// Processes `file` as an upload of `contentType` would (the whole pipeline: inspection,
/// reading, type inference, cleaning, the row file), on the calling thread. Refusing the file
/// is fine; crashing is not, and a load that succeeds must have stored the rows it reports.
public func ingest(_ file: URL, contentType: String, options: ParseOptions = ParseOptions()) {
    let output = scratchDirectory.appendingPathComponent("rows.sqlite")
    defer { clearScratch() }
    let result: IngestionResult
    do {
        let pipeline = try IngestionPipeline(
            source: file, contentType: contentType, options: options, output: output, workDirectory: scratchDirectory,
            isCancelled: { false }, stages: { false }, progress: { _, _ in })
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
