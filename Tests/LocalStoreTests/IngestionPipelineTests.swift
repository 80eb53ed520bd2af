import DataSourceDomain
import Foundation
import GRDB
import Synchronization
import Testing
@testable import LocalStore

/// The staged load (reading thread → records → convert stage → rows → insert stage): results
/// must not depend on where batches end, and a failure or cancellation in any stage must stop
/// every stage's thread.
@Suite(.serialized) struct IngestionPipelineTests {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ingest-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func pipeline(
        _ text: String, name: String = "in.csv", contentType: String = "text/csv", rowsPerBatch: Int? = nil, stages: Bool = true,
        cancelled: @escaping () -> Bool = { false }
    ) throws -> IngestionPipeline {
        let source = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: source)
        let pipeline = try IngestionPipeline(
            source: source, contentType: contentType, options: ParseOptions(), output: directory.appendingPathComponent("\(name).sqlite"),
            workDirectory: directory, isCancelled: cancelled, stages: { stages }, progress: { _, _ in })
        pipeline.rowsPerBatch = rowsPerBatch
        return pipeline
    }

    /// Every stored row, each value with its storage class (so 1 and 1.0 and '1' differ).
    func tableRows(_ pipeline: IngestionPipeline) throws -> [[String]] {
        let queue = try DatabaseQueue(path: pipeline.output.path)
        return try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM rows ORDER BY rowid").map { row in
                row.databaseValues.map { value in
                    switch value.storage {
                    case .null: "null"
                    case .int64(let v): "int \(v)"
                    case .double(let v): "double \(v)"
                    case .string(let v): "text \(v)"
                    case .blob: "blob"
                    }
                }
            }
        }
    }

    /// The load's threads (insert stage and reading thread) still running, after a grace period.
    func waitForStagesToEnd(_ threads: StageThreads) -> Int {
        for _ in 0..<200 where threads.count > 0 { usleep(10_000) }
        return threads.count
    }

    /// 1,000 rows with cleaned numbers, short rows, null tokens and padded values spread over them.
    static let messyCSV: String = {
        var text = "id,amount,label,flag,day\n"
        for i in 0..<1000 {
            if i % 53 == 5 { text += "\(i),\(i).5\n"; continue }
            let amount = i % 37 == 3 ? "\"$1,\(String(format: "%03d", i)).50\"" : "\(i).25"
            let label = i % 101 == 7 ? "N/A" : i % 11 == 0 ? "  label \(i) " : "label \(i)"
            text += "\(i),\(amount),\(label),\(i % 2 == 0 ? "yes" : "no"),2024-01-\(String(format: "%02d", i % 28 + 1))\n"
        }
        return text
    }()

    @Test func resultsDoNotDependOnBatchBoundaries() throws {
        var outcomes: [(IngestionResult, [[String]])] = []
        // Stages on threads of their own with batches of several sizes, then on one thread.
        let runs: [(Int?, Bool)] = [(nil, true), (1, true), (7, true), (999, true), (1000, true), (7, false), (nil, false)]
        for (index, (size, stages)) in runs.enumerated() {
            let load = try pipeline(Self.messyCSV, name: "messy\(index).csv", rowsPerBatch: size, stages: stages)
            outcomes.append((try load.run(), try tableRows(load)))
        }
        let (result, rows) = outcomes[0]
        #expect(result.rowCount == 1000)
        #expect(rows.count == 1000)
        #expect(rows[999] == ["int 999", "double 999.25", "text label 999", "int 0", "text 2024-01-20"])
        #expect(rows[5] == ["int 5", "double 5.5", "null", "null", "null"])
        #expect(rows[3] == ["int 3", "double 1003.5", "text label 3", "int 0", "text 2024-01-04"])
        #expect(rows[7] == ["int 7", "double 7.25", "null", "int 0", "text 2024-01-08"])
        #expect(rows[11] == ["int 11", "double 11.25", "text label 11", "int 0", "text 2024-01-12"])
        let shortRows = (0..<1000).filter { $0 % 53 == 5 }.count
        let cleanedNumbers = (0..<1000).filter { $0 % 53 != 5 && $0 % 37 == 3 }.count
        #expect(result.stats == ProcessingStats(cleanedRows: 1000, errors: 0, warnings: shortRows + cleanedNumbers))
        #expect(result.columns.map(\.type) == [.number, .number, .string, .boolean, .date])
        for (other, otherRows) in outcomes.dropFirst() {
            #expect(other.rowCount == result.rowCount)
            #expect(other.stats == result.stats)
            #expect(other.issues == result.issues)
            #expect(other.columns == result.columns)
            #expect(otherRows == rows)
        }
    }

    @Test func aValueThatDoesNotFitAfterSeveralBatchesReloadsTheWholeFile() throws {
        var text = "code,n\n"
        for i in 0..<3000 { text += "\(i == 2500 ? "A12" : String(i)),\(i)\n" }
        let load = try pipeline(text, rowsPerBatch: 16)
        let result = try load.run()
        let rows = try tableRows(load)
        #expect(result.columns.map(\.type) == [.string, .number])
        #expect(rows.count == 3000)
        #expect(rows[0] == ["text 0", "int 0"])
        #expect(rows[2500] == ["text A12", "int 2500"])
        #expect(waitForStagesToEnd(load.stageThreads) == 0)
    }

    /// Records `a,b` numbered from 0, then a read error after `failAfter` of them.
    struct FailingReader: RecordReader {
        var failAfter: Int
        /// Ends the source at `failAfter` records instead of failing.
        var endsThere = false
        var produced = 0
        var declaredColumns: [String]? { ["a", "b"] }
        var bytesConsumed: Int64 { Int64(produced) }

        mutating func next(into record: inout LocalStore.Record) throws -> Bool {
            guard produced < failAfter else {
                if endsThere { return false }
                throw IngestionFailure("cannot read the file: Input/output error")
            }
            record.reset()
            record.appendField(String(produced))
            record.appendField("row \(produced)")
            produced += 1
            record.line = produced + 1
            return true
        }
    }

    @Test func aReadErrorMidFileStopsBothStages() throws {
        let load = try pipeline("a,b\n1,2\n", rowsPerBatch: 8)
        let layout = TableLayout(names: ["a", "b"], width: 2, dataStart: 0, firstDataLine: 2)
        let decisions = [ColumnDecision(type: .number), ColumnDecision(type: .string)]
        #expect {
            try load.load(
                RecordPrefetcher(FailingReader(failAfter: 100), recordsPerBatch: 8, threads: load.stageThreads), layout: layout, names: ["a", "b"], decisions: decisions)
        } throws: { error in
            (error as? IngestionFailure)?.message == "cannot read the file: Input/output error"
        }
        #expect(waitForStagesToEnd(load.stageThreads) == 0)
        // The same records without the error load whole.
        let whole = try load.load(FailingReader(failAfter: 100, endsThere: true), layout: layout, names: ["a", "b"], decisions: decisions)
        #expect(whole.rowCount == 100)
        #expect(try tableRows(load).last == ["int 99", "text row 99"])
    }

    @Test func anInsertErrorReachesTheParseStage() throws {
        var text = "id,label\n"
        for i in 0..<400 { text += "\(i),\(i == 300 ? String(repeating: "x", count: 5000) : "short")\n" }
        let load = try pipeline(text, rowsPerBatch: 8)
        load.prepareWriter = { $0.limitLength(1000) }
        #expect {
            try load.run()
        } throws: { error in
            "\(error)".contains("SQLite insert failed") && "\(error)".contains("too big")
        }
        #expect(waitForStagesToEnd(load.stageThreads) == 0)
    }

    @Test func cancellationMidLoadStopsBothStages() throws {
        var text = "id,label\n"
        for i in 0..<50_000 { text += "\(i),label \(i)\n" }
        let load = try pipeline(text, rowsPerBatch: 100, cancelled: { true })
        #expect(throws: IngestionPipeline.Cancelled.self) { try load.run() }
        #expect(waitForStagesToEnd(load.stageThreads) == 0)
    }

    @Test func thePrefetcherHandsOverEveryRecordThenTheReadersError() throws {
        let reader = RecordPrefetcher(FailingReader(failAfter: 5003), recordsPerBatch: 100)
        var record = LocalStore.Record()
        var seen: [String] = []
        #expect {
            while try reader.next(into: &record) { seen.append(record.fieldString(0)) }
        } throws: { error in
            (error as? IngestionFailure)?.message == "cannot read the file: Input/output error"
        }
        #expect(seen == (0..<5003).map(String.init))
        #expect(reader.declaredColumns == ["a", "b"])
    }

    @Test func releasingThePrefetcherEarlyStopsItsThread() throws {
        let threads = StageThreads()
        do {
            let reader = RecordPrefetcher(FailingReader(failAfter: 100_000, endsThere: true), recordsPerBatch: 64, threads: threads)
            var record = LocalStore.Record()
            for _ in 0..<10 { _ = try reader.next(into: &record) }
            #expect(record.fieldString(1) == "row 9")
            #expect(threads.count == 1)
        }
        // Releasing waits for the thread, so it has ended by now.
        #expect(threads.count == 0)
    }
}
