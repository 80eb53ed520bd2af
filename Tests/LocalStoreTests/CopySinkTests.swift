import DataSourceDomain
import Foundation
import Synchronization
import Testing
@testable import LocalStore

/// The `COPY` data (text and binary) the pipeline's rows become for a store that keeps them in PostgreSQL, and
/// the pipeline's loads as a `CopyTarget` sees them (a reload after a value that does not
/// fit, a target that fails).
@Suite(.serialized) struct CopySinkTests {
    func text(_ write: (inout [UInt8]) -> Void) -> String {
        var lines: [UInt8] = []
        write(&lines)
        return String(decoding: lines, as: UTF8.self)
    }

    @Test func integersAreWrittenInDecimal() {
        #expect(text { CopyText.append(Int64(0), to: &$0) } == "0")
        #expect(text { CopyText.append(Int64(-42), to: &$0) } == "-42")
        #expect(text { CopyText.append(Int64.max, to: &$0) } == "9223372036854775807")
        #expect(text { CopyText.append(Int64.min, to: &$0) } == "-9223372036854775808")
    }

    @Test func doublesReadBackAsTheSameValue() {
        #expect(text { CopyText.append(1.5, to: &$0) } == "1.5")
        #expect(text { CopyText.append(0.1, to: &$0) } == "0.1")
        #expect(text { CopyText.append(1_700_000_000.0, to: &$0) } == "1700000000")
        #expect(text { CopyText.append(-3.0, to: &$0) } == "-3")
        #expect(text { CopyText.append(-0.0, to: &$0) } == "-0.0")
        #expect(text { CopyText.append(1e20, to: &$0) } == "1e+20")
        #expect(text { CopyText.append(-1.25e-7, to: &$0) } == "-1.25e-07")
        // float8in reads these three as PostgreSQL's own infinities and NaN.
        #expect(text { CopyText.append(Double.infinity, to: &$0) } == "inf")
        #expect(text { CopyText.append(-Double.infinity, to: &$0) } == "-inf")
        #expect(text { CopyText.append(Double.nan, to: &$0) } == "nan")
        for value in [0.1 + 0.2, 123_456.789, 1e15, 999_999_999_999_999.0, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude] {
            #expect(Double(text { CopyText.append(value, to: &$0) }) == value)
        }
    }

    func escaped(_ value: String) -> String {
        text { lines in Array(value.utf8).withUnsafeBufferPointer { CopyText.appendEscaped($0, to: &lines) } }
    }

    @Test func textEscapesBackslashTabNewlineAndCarriageReturnOnly() {
        #expect(escaped("") == "")
        #expect(escaped("plain") == "plain")
        #expect(escaped("a\tb\nc\\d\re") == #"a\tb\nc\\d\re"#)
        #expect(escaped("\\N") == #"\\N"#)
        #expect(escaped("\t\t") == #"\t\t"#)
        #expect(escaped("café 😀 naïve \u{2028}") == "café 😀 naïve \u{2028}")
        #expect(escaped("\"quoted\", 'single'") == "\"quoted\", 'single'")
    }

    /// Records what a load sends, as a PostgreSQL store's hand-over receives it.
    final class RecordingTarget: CopyTarget, @unchecked Sendable {
        var events: [String] = []
        var text = ""
        var bytes: [UInt8] = []
        var failOnSend: Int?
        private var sends = 0
        struct Refused: Error {}
        func begin(types: [ColumnType]) throws {
            events.append("begin \(types.map(\.rawValue).joined(separator: ","))")
            text = ""
            bytes = []
        }
        func send(_ lines: [UInt8]) throws {
            sends += 1
            if let failOnSend, sends >= failOnSend { throw Refused() }
            events.append("send")
            text += String(decoding: lines, as: UTF8.self)
            bytes += lines
        }
        func end() throws { events.append("end") }
        func abandon() { events.append("abandon") }
        var rows: [String] { text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) }
    }

    /// `body` with a pipeline over `csv` whose rows go to `target`, and the table file it
    /// must never write; the files are removed afterwards.
    func withPipeline<T>(
        _ csv: String, target: RecordingTarget, rowsPerBatch: Int? = nil, format: CopyFormat = .text,
        _ body: (IngestionPipeline, _ unusedTable: URL) throws -> T
    ) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("copy-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("in.csv")
        try Data(csv.utf8).write(to: source)
        let unusedTable = directory.appendingPathComponent("unused.sqlite")
        let pipeline = try IngestionPipeline(
            source: source, contentType: "text/csv", options: ParseOptions(), output: unusedTable,
            workDirectory: directory, isCancelled: { false }, progress: { _, _ in })
        pipeline.rowsPerBatch = rowsPerBatch
        pipeline.makeSink = { types in try CopySink(target: target, types: types, format: format) }
        return try body(pipeline, unusedTable)
    }

    func load(_ csv: String, target: RecordingTarget, rowsPerBatch: Int? = nil, format: CopyFormat = .text) throws -> (IngestionPipeline, IngestionResult) {
        try withPipeline(csv, target: target, rowsPerBatch: rowsPerBatch, format: format) { pipeline, unusedTable in
            let result = try pipeline.run()
            #expect(!FileManager.default.fileExists(atPath: unusedTable.path))
            return (pipeline, result)
        }
    }

    @Test func everyTypeAndNullBecomesItsCopyField() throws {
        let csv = """
            n,price,flag,day,at,label
            1,"$1,234.50",yes,2024-02-29,2024-01-02T03:04:05Z,"tab\there"
            2,,no,,,"line
            break"
            -3,0.25,true,2024-03-01,2024-01-02T03:04:05.5Z,back\\slash é
            """
        let target = RecordingTarget()
        let (_, result) = try load(csv, target: target)
        #expect(result.columns.map(\.type) == [.number, .number, .boolean, .date, .datetime, .string])
        #expect(target.events == ["begin number,number,boolean,date,datetime,string", "send", "end"])
        #expect(target.rows == [
            "1\t1\t1234.5\tt\t2024-02-29\t1704164645\ttab\\there",
            "2\t2\t\\N\tf\t\\N\t\\N\tline\\nbreak",
            "3\t-3\t0.25\tt\t2024-03-01\t1704164645.5\tback\\\\slash é",
        ])
    }

    @Test func aValueThatDoesNotFitAbandonsTheLoadAndBeginsAgain() throws {
        var csv = "code,n\n"
        for i in 0..<3000 { csv += "\(i == 2500 ? "A12" : String(i)),\(i)\n" }
        let target = RecordingTarget()
        let (pipeline, result) = try load(csv, target: target, rowsPerBatch: 16)
        #expect(result.columns.map(\.type) == [.string, .number])
        #expect(target.events.first == "begin number,number")
        let reload = try #require(target.events.firstIndex(of: "begin string,number"))
        #expect(target.events[reload - 1] == "abandon")
        #expect(target.events.last == "end")
        #expect(target.events.filter { $0.hasPrefix("begin") }.count == 2)
        #expect(target.rows.count == 3000)
        #expect(target.rows[2500] == "2501\tA12\t2500")
        #expect(target.rows[0] == "1\t0\t0")
        for _ in 0..<200 where pipeline.stageThreads.count > 0 { usleep(10_000) }
        #expect(pipeline.stageThreads.count == 0)
    }

    @Test func aTargetThatFailsStopsEveryStage() throws {
        var csv = "id,label\n"
        for i in 0..<200_000 { csv += "\(i),label number \(i) with some text to fill a chunk\n" }
        let target = RecordingTarget()
        target.failOnSend = 2
        try withPipeline(csv, target: target) { pipeline, _ in
            #expect(throws: RecordingTarget.Refused.self) { try pipeline.run() }
            #expect(target.events.last == "abandon")
            for _ in 0..<200 where pipeline.stageThreads.count > 0 { usleep(10_000) }
            #expect(pipeline.stageThreads.count == 0)
        }
    }

    /// The fields of each row of `COPY` binary data, read back as PostgreSQL reads them.
    func binaryRows(_ data: [UInt8], types: [ColumnType]) throws -> [[String]] {
        var at = 0
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard at + count <= data.count else { throw CancellationError() }
            defer { at += count }
            return data[at..<at + count]
        }
        func integer(_ count: Int) throws -> Int64 { try take(count).reduce(Int64(0)) { $0 << 8 | Int64($1) } }
        #expect(Array(try take(11)) == CopyBinary.signature)
        #expect(try integer(4) == 0)
        #expect(try integer(4) == 0)
        var rows: [[String]] = []
        while true {
            let fields = Int16(truncatingIfNeeded: try integer(2))
            if fields == -1 { break }
            #expect(Int(fields) == types.count + 1)
            var row: [String] = []
            for field in 0..<Int(fields) {
                let length = Int32(truncatingIfNeeded: try integer(4))
                if length == -1 { row.append("null"); continue }
                let bytes = try take(Int(length))
                let type = field == 0 ? nil : types[field - 1]
                switch type {
                case nil: row.append("int8 \(bytes.reduce(Int64(0)) { $0 << 8 | Int64($1) })")
                case .boolean: row.append("bool \(bytes.first == 1)")
                case .number, .datetime:
                    #expect(length == 8)
                    row.append("float8 \(Double(bitPattern: UInt64(bitPattern: bytes.reduce(Int64(0)) { $0 << 8 | Int64($1) })))")
                case .string, .date: row.append("text \(String(decoding: bytes, as: UTF8.self))")
                }
            }
            rows.append(row)
        }
        #expect(at == data.count)
        return rows
    }

    @Test func everyTypeAndNullBecomesItsBinaryField() throws {
        let csv = """
            n,price,flag,day,at,label
            1,"$1,234.50",yes,2024-02-29,2024-01-02T03:04:05Z,"tab\there"
            2,,no,,,"line
            break"
            -3,0.25,true,2024-03-01,2024-01-02T03:04:05.5Z,back\\slash é 😀
            9007199254740993,1e300,false,2024-12-31,1970-01-01T00:00:00Z,""
            """
        let target = RecordingTarget()
        let (_, result) = try load(csv, target: target, format: .binary)
        let types = result.columns.map(\.type)
        #expect(types == [.number, .number, .boolean, .date, .datetime, .string])
        #expect(target.events == ["begin number,number,boolean,date,datetime,string", "send", "end"])
        let rows = try binaryRows(target.bytes, types: types)
        #expect(rows == [
            ["int8 1", "float8 1.0", "float8 1234.5", "bool true", "text 2024-02-29", "float8 1704164645.0", "text tab\there"],
            ["int8 2", "float8 2.0", "null", "bool false", "null", "null", "text line\nbreak"],
            ["int8 3", "float8 -3.0", "float8 0.25", "bool true", "text 2024-03-01", "float8 1704164645.5", "text back\\slash é 😀"],
            // An integer beyond 2^53 becomes the nearest double, as PostgreSQL's float8in reads it.
            ["int8 4", "float8 9007199254740992.0", "float8 1e+300", "bool false", "text 2024-12-31", "float8 0.0", "null"],
        ])
    }

    @Test func aReloadInBinaryBeginsWithANewHeader() throws {
        var csv = "code,n\n"
        for i in 0..<3000 { csv += "\(i == 2500 ? "A12" : String(i)),\(i)\n" }
        let target = RecordingTarget()
        let (_, result) = try load(csv, target: target, rowsPerBatch: 16, format: .binary)
        let rows = try binaryRows(target.bytes, types: result.columns.map(\.type))
        #expect(rows.count == 3000)
        #expect(rows[2500] == ["int8 2501", "text A12", "float8 2500.0"])
    }
}
