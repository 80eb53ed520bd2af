import DataSourceDomain
import Foundation
import JSONKit

/// What processing produced.
struct IngestionResult: Sendable {
    var columns: [DataColumn]
    var rowCount: Int
    var stats: ProcessingStats
    var issues: [ProcessingIssue]
    /// A spreadsheet's sheets and the one read; nil for other formats.
    var sheets: SpreadsheetSheets?
}

/// The formats a file can be read as.
enum SourceFormat: Equatable {
    case delimited(forcedDelimiter: UInt8?)
    case json
    case jsonLines
    case plainText
    case spreadsheet(SpreadsheetKind)
    case pdf

    enum SpreadsheetKind { case xlsx, ods }

    /// Sheets and PDF tables: read as rows of cells, with no encoding or dialect to detect.
    var isRowsOfCells: Bool {
        switch self {
        case .spreadsheet, .pdf: true
        default: false
        }
    }

    init?(contentType: String) {
        switch contentType.lowercased().split(separator: ";").first.map({ $0.trimmingCharacters(in: .whitespaces) }) ?? "" {
        case "text/csv", "application/csv", "text/x-csv", "application/vnd.ms-excel": self = .delimited(forcedDelimiter: nil)
        case "text/tab-separated-values", "text/tsv": self = .delimited(forcedDelimiter: 0x09)
        case "application/json", "text/json": self = .json
        case "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines", "application/ndjson":
            self = .jsonLines
        case "text/plain": self = .plainText
        case "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": self = .spreadsheet(.xlsx)
        case "application/vnd.oasis.opendocument.spreadsheet": self = .spreadsheet(.ods)
        case "application/pdf": self = .pdf
        default: return nil
        }
    }
}

/// Reads a stored original, infers and cleans its columns, and writes the typed rows into a
/// fresh SQLite file (or another `RowSink`). Types are inferred from a sample; a later value that does not fit
/// restarts the load once with types inferred from the whole file, so no value is ever
/// silently lost.
final class IngestionPipeline {
    static let sampleSize = 1000
    static let keptIssues = 1000

    let source: URL
    let format: SourceFormat
    let options: ParseOptions
    let output: URL
    let workDirectory: URL
    let fileSize: Int64
    let isCancelled: () -> Bool
    /// Asked as each load starts: whether it may run its stages on threads of their own
    /// (false while another upload is processing, when the cores are busy already).
    let stages: () -> Bool
    let progress: (_ bytesDone: Int64, _ rows: Int) -> Void
    private let extraNulls: [[UInt8]]

    init(
        source: URL, contentType: String, options: ParseOptions, output: URL, workDirectory: URL,
        isCancelled: @escaping () -> Bool, stages: @escaping () -> Bool = { true }, progress: @escaping (Int64, Int) -> Void
    ) throws {
        guard let format = SourceFormat(contentType: contentType) else {
            throw IngestionFailure("unsupported format \(contentType): expected CSV, TSV, JSON, JSON Lines, plain text, XLSX, ODS or PDF")
        }
        self.source = source
        self.format = format
        self.options = options
        self.output = output
        self.workDirectory = workDirectory
        self.isCancelled = isCancelled
        self.stages = stages
        self.progress = progress
        fileSize = (try? FileManager.default.attributesOfItem(atPath: source.path)[.size] as? Int64) ?? 0
        extraNulls = (options.nullValues ?? []).map { Array($0.utf8) }
        clean = options.clean ?? true
    }

    /// `options.clean: false` keeps every value as written.
    let clean: Bool

    struct Cancelled: Error {}
    private struct DoesNotFit: Error { var column: Int }

    func run() throws -> IngestionResult {
        var textURL = source
        defer { if textURL != source { try? FileManager.default.removeItem(at: textURL) } }
        let makeReader: (_ start: Int64, _ line: Int, _ width: Int?) throws -> any RecordReader
        var sample: [Record] = []
        var layout: TableLayout
        var sheets: SpreadsheetSheets?
        if format.isRowsOfCells {
            // Sheets and PDF tables are rows of cells already: no encoding or dialect to find.
            let empty: String
            if case .spreadsheet(let declared) = format {
                var archive = try SpreadsheetArchive(url: source, format: declared == .xlsx ? "XLSX" : "ODS")
                // The parts decide, whatever the name or content type said: an ODS file named
                // `.xlsx` is read as ODS, and the other way round.
                let kind: SourceFormat.SpreadsheetKind =
                    archive.entry("xl/workbook.xml") != nil ? .xlsx : archive.entry("content.xml") != nil ? .ods : declared
                archive.format = kind == .xlsx ? "XLSX" : "ODS"
                let workbook: any SpreadsheetWorkbook
                switch kind {
                case .xlsx: workbook = try XLSXWorkbook(archive: archive, sheet: options.sheet, workDirectory: workDirectory, name: output.lastPathComponent)
                case .ods: workbook = try ODSWorkbook(archive: archive, sheet: options.sheet, workDirectory: workDirectory, name: output.lastPathComponent)
                }
                sheets = workbook.sheets
                makeReader = { start, _, width in try workbook.reader(skipping: start, width: width) }
                empty = "the sheet \"\(workbook.sheets.read)\" holds no values"
            } else {
                let pages = try PDFReaderProcess.pages(of: source, workDirectory: workDirectory, isCancelled: isCancelled) { [fileSize, progress] done, count in
                    progress(Int64(Double(done) / Double(count) * Double(fileSize / 2)), 0)
                }
                let rows = try PDFTableBuilder.rows(pages)
                makeReader = { [fileSize] start, _, width in PDFReader(rows: rows, fileSize: fileSize, skipping: start, width: width) }
                empty = "the PDF holds no table rows"
            }
            var reader = try makeReader(0, 1, nil)
            var record = Record()
            while sample.count <= Self.sampleSize, try reader.next(into: &record) { sample.append(record) }
            guard !sample.isEmpty else { throw IngestionFailure(empty) }
            // Rows end at their last value: give the sample one width for the header detection.
            let widest = sample.map(\.fieldCount).max() ?? 0
            for i in sample.indices {
                while sample[i].fieldCount < widest { sample[i].endField(); sample[i].textOnly.append(false) }
            }
            layout = TableLayout.detect(records: sample, prefix: [], skip: 0, end: Int64.max, dialect: .csv, header: options.header)
            if layout.dataStart == Int64.max, let last = sample.last { layout.dataStart = last.offset + 1 }
            sample.removeAll(keepingCapacity: true)
            reader = try makeReader(layout.dataStart, 1, layout.width)
            while sample.count < Self.sampleSize, try reader.next(into: &record) { sample.append(record) }
        } else {
            let prefix = try SourceInspection.readPrefix(source)
            guard !prefix.isEmpty else { throw IngestionFailure("the file is empty") }
            var encoding = try SourceInspection.detectEncoding(source, prefix: prefix, forced: options.encoding)
            switch encoding {
            case .utf16LittleEndian, .utf16BigEndian:
                textURL = workDirectory.appendingPathComponent(output.lastPathComponent + ".utf8")
                try SourceInspection.transcodeUTF16(source, bigEndian: encoding == .utf16BigEndian, to: textURL)
                encoding = .utf8(bomLength: 0)
            default:
                if SourceInspection.looksBinary(prefix) {
                    throw IngestionFailure("the file holds binary content, not \(formatName)")
                }
            }
            let latin1 = encoding == .latin1
            let skip: Int = { if case .utf8(let bom) = encoding { bom } else { 0 } }()

            let dialect: Dialect = try resolveDialect(textURL, skip: skip)
            let textSize = (try? FileManager.default.attributesOfItem(atPath: textURL.path)[.size] as? Int64) ?? fileSize
            makeReader = { [format] start, line, width in
                switch format {
                case .json: return try JSONArrayReader(url: textURL, skipping: skip)
                case .jsonLines: return try JSONLinesReader(url: textURL, latin1: latin1, skipping: skip)
                default:
                    var reader = try DelimitedReader(url: textURL, dialect: dialect, latin1: latin1, skipping: Int(start), firstLine: line)
                    reader.expectedWidth = width
                    return reader
                }
            }

            // Structure first: read the first records and decide where the table is.
            var reader = try makeReader(Int64(skip), 1, nil)
            var record = Record()
            while sample.count <= Self.sampleSize, try reader.next(into: &record) {
                if record.problem == nil { sample.append(record) }
            }
            if let declared = reader.declaredColumns {
                layout = TableLayout(names: declared, width: declared.count, dataStart: Int64(skip), firstDataLine: 1)
            } else if sample.isEmpty {
                throw IngestionFailure("neither a header nor any row could be read from the file")
            } else if case .delimited = format {
                let prefix = Array(try SourceInspection.readPrefix(textURL, count: skip + SourceInspection.sniffBytes).dropFirst(skip))
                layout = TableLayout.detect(records: sample, prefix: prefix, skip: skip, end: textSize, dialect: dialect, header: options.header)
                // Rows are read from the table's first data row.
                if layout.dataStart != Int64(skip) {
                    sample.removeAll(keepingCapacity: true)
                    reader = try makeReader(layout.dataStart, layout.firstDataLine, layout.width)
                    while sample.count < Self.sampleSize, try reader.next(into: &record) {
                        if record.problem == nil { sample.append(record) }
                    }
                }
            } else {
                // Plain text: one column, every line a row.
                layout = TableLayout(names: ["text"], width: 1, dataStart: Int64(skip), firstDataLine: 1)
            }
        }
        let columnNames = Self.cleanNames(layout.names ?? (1...max(layout.width, 1)).map { "column_\($0)" })
        guard !columnNames.isEmpty else { throw IngestionFailure("no columns found") }
        guard columnNames.count <= TableWriter.maxColumns else {
            throw IngestionFailure("too many columns: \(columnNames.count) (at most \(TableWriter.maxColumns))")
        }
        let header = layout.names
        func profiled(_ rows: inout any RecordReader, limit: Int) throws -> [ColumnDecision] {
            var profiles = [ColumnProfile](repeating: ColumnProfile(canonical: !clean), count: columnNames.count)
            var seen = 0
            var row = Record()
            while seen < limit, try rows.next(into: &row) {
                if row.blankBefore, seen > 0, TableLayout.startsAnotherTable(row, width: columnNames.count, names: header, decisions: profiles.map(\.decision)) {
                    break
                }
                if row.problem == nil { observe(row, into: &profiles) }
                seen += 1
                if seen & 0x3FFF == 0, isCancelled() { throw Cancelled() }
            }
            return profiles.map(\.decision)
        }
        var sampleReader: any RecordReader = SampleReader(records: sample)
        var decisions = try profiled(&sampleReader, limit: .max)

        // Load; on a value that does not fit, profile the whole file and load again.
        // The records are read and tokenized a batch ahead on a thread of their own.
        let recordsPerBatch = rowsPerBatch ?? max(16, min(2048, (1 << 17) / columnNames.count))
        func prefetched() throws -> any RecordReader {
            let reader = try makeReader(layout.dataStart, layout.firstDataLine, layout.width)
            return stages() ? RecordPrefetcher(reader, recordsPerBatch: recordsPerBatch, threads: stageThreads) : reader
        }
        var result: IngestionResult
        do {
            result = try load(prefetched(), layout: layout, names: columnNames, decisions: decisions)
        } catch is DoesNotFit {
            do {
                var full = try prefetched()
                decisions = try profiled(&full, limit: .max)
            }
            result = try load(prefetched(), layout: layout, names: columnNames, decisions: decisions)
        }
        result.sheets = sheets
        return result
    }

    private var formatName: String {
        switch format {
        case .json: "JSON"
        case .jsonLines: "JSON Lines"
        case .plainText: "text"
        default: "delimited text"
        }
    }

    private func resolveDialect(_ url: URL, skip: Int) throws -> Dialect {
        switch format {
        case .plainText, .json, .jsonLines: return .lines
        case .delimited(let forced):
            var dialect = Dialect.csv
            if let forcedDelimiter = forced {
                dialect.delimiter = forcedDelimiter
            } else if options.delimiter == nil {
                dialect = SourceInspection.sniffDialect(Array(try SourceInspection.readPrefix(url, count: skip + SourceInspection.sniffBytes).dropFirst(skip)))
            }
            if let delimiter = options.delimiter {
                let bytes = Array((delimiter == "\\t" ? "\t" : delimiter).utf8)
                guard bytes.count == 1 else { throw IngestionFailure("options.delimiter must be a single ASCII character") }
                dialect.delimiter = bytes[0]
            }
            if let quote = options.quote {
                let bytes = Array(quote.utf8)
                guard bytes.count <= 1 else { throw IngestionFailure("options.quote must be a single ASCII character or empty") }
                dialect.quote = bytes.first
            }
            return dialect
        default: return .csv
        }
    }

    private func observe(_ record: Record, into profiles: inout [ColumnProfile]) {
        for column in 0..<min(record.fieldCount, profiles.count) {
            record.withField(column) { raw in
                if clean {
                    let value = CellParsing.trimmed(raw)
                    if !CellParsing.isNullToken(value, extra: extraNulls) { profiles[column].observe(value, textOnly: record.isTextOnly(column)) }
                } else if !raw.isEmpty, !extraNulls.contains(where: { $0.elementsEqual(raw) }) {
                    profiles[column].observe(raw, textOnly: record.isTextOnly(column))
                }
            }
        }
    }

    /// Blank names become `column_N`; repeated names get `_2`, `_3`.
    static func cleanNames(_ raw: [String]) -> [String] {
        uniqueNames(raw.enumerated().map { index, name in
            let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty ? "column_\(index + 1)" : trimmed
        })
    }

    /// A name met again gets `_2`, `_3`, … (header names, and the columns of a SQL answer).
    static func uniqueNames(_ names: [String]) -> [String] {
        var used = Set<String>()
        return names.map { base in
            var candidate = base
            var suffix = 2
            while used.contains(candidate) {
                candidate = "\(base)_\(suffix)"
                suffix += 1
            }
            used.insert(candidate)
            return candidate
        }
    }

    /// Rows per batch handed from the convert stage to the insert stage (about 128k cells, at
    /// most 8,192 rows), and records per batch from the reading thread (at most 2,048, about
    /// 128k fields); tests make both small to cross batch boundaries.
    var rowsPerBatch: Int?
    /// This load's reading and insert threads that have not ended yet.
    let stageThreads = StageThreads()
    /// Called with the table writer before any row is loaded (tests make inserts fail with it).
    var prepareWriter: ((TableWriter) -> Void)?
    /// Where each load's rows go, made as the load starts with its columns' types (a reload
    /// after a value that does not fit makes a new one). By default the SQLite table file
    /// `output`; `SharedIngestion` streams them as `COPY` data instead.
    var makeSink: ((_ types: [ColumnType]) throws -> any RowSink)?

    private func sink(types: [ColumnType]) throws -> any RowSink {
        if let makeSink { return try makeSink(types) }
        let writer = try TableWriter(path: output.path, columnCount: types.count)
        prepareWriter?(writer)
        return writer
    }

    /// Loads the rows: this thread (the convert stage) cleans and converts each record that
    /// `reader` gives (a `RecordPrefetcher`, reading on a thread of its own, when the load
    /// has stages) into batches of ready-to-bind values, and keeps the issues, tallies and
    /// samples, in file order; a `BatchInserter` hands them to the load's sink.
    func load(_ reader: any RecordReader, layout: TableLayout, names: [String], decisions: [ColumnDecision]) throws -> IngestionResult {
        var reader = reader
        let columnCount = names.count
        let sink = try sink(types: decisions.map(\.type))
        let inserter = BatchInserter(
            sink: sink, columns: columnCount, rowsPerBatch: rowsPerBatch ?? max(1, min(8192, (1 << 17) / columnCount)), threaded: stages(),
            threads: stageThreads)
        var issues: [IssueRecord] = []
        var warnings = 0
        var errors = 0
        func note(_ severity: ProcessingIssue.Severity, _ line: Int, _ column: String?, _ kind: String, _ reason: String) {
            if severity == .warning { warnings += 1 } else { errors += 1 }
            if issues.count < Self.keptIssues { issues.append((line, column, severity.rawValue, kind, reason)) }
        }
        for layoutNote in layout.notes { note(.warning, layoutNote.line, nil, layoutNote.kind, layoutNote.reason) }
        var samples = [[JSONValue]](repeating: [], count: names.count)
        var sampleBytes = [[[UInt8]]](repeating: [], count: names.count)
        var tallies = [CleaningTally](repeating: CleaningTally(), count: names.count)
        var rows = 0
        var record = Record()
        let clean = self.clean
        do {
            var batch = try inserter.emptyBatch()
            while try reader.next(into: &record) {
                if record.blankBefore, rows > 0,
                    TableLayout.startsAnotherTable(record, width: columnCount, names: layout.names, decisions: decisions)
                {
                    note(.warning, record.line, nil, "second_table", "another table starts at line \(record.line); only the first table was loaded")
                    break
                }
                if let problem = record.problem {
                    note(.error, record.line, nil, "unparseable_row", problem)
                    continue
                }
                if record.repaired {
                    note(.warning, record.line, nil, "stray_quote", "a quote that does not close on its line was read as text")
                }
                if record.fieldCount > columnCount {
                    note(.error, record.line, nil, "extra_fields", "\(record.fieldCount) fields where the header has \(columnCount); the extra fields were dropped")
                } else if record.fieldCount < columnCount {
                    note(.warning, record.line, nil, "short_row", "\(record.fieldCount) fields where the header has \(columnCount); padded with nulls")
                }
                for fieldNote in record.fieldNotes where fieldNote.field < columnCount {
                    note(.warning, record.line, names[fieldNote.field], fieldNote.kind, fieldNote.reason)
                }
                try record.bytes.withUnsafeBufferPointer { buffer in
                    for column in 0..<columnCount {
                        guard column < record.fieldCount else { batch.appendNull(); continue }
                        let start = column == 0 ? 0 : record.ends[column - 1]
                        let raw = UnsafeBufferPointer(rebasing: buffer[start..<record.ends[column]])
                        let value = clean ? CellParsing.trimmed(raw) : raw
                        if value.isEmpty || (clean ? CellParsing.isNullToken(value, extra: extraNulls) : extraNulls.contains { $0.elementsEqual(value) }) {
                            if clean, !value.isEmpty { tallies[column].count(.nullTokenReplaced, from: raw, to: .null) }
                            batch.appendNull()
                            continue
                        }
                        var cleaned = CellParsing.Cleaning()
                        if record.isTextOnly(column), decisions[column].type == .number || decisions[column].type == .boolean {
                            throw DoesNotFit(column: column)
                        }
                        guard let stored = StoredValue.convert(value, as: decisions[column], cleaned: &cleaned) else {
                            throw DoesNotFit(column: column)
                        }
                        if value.count != raw.count || !cleaned.isEmpty {
                            let json = Self.json(stored, type: decisions[column].type)
                            if value.count != raw.count { tallies[column].count(.whitespaceTrimmed, from: raw, to: json) }
                            if !cleaned.isEmpty { tallies[column].count(cleaned, from: value, to: json) }
                            if cleaned.contains(.currencySymbolRemoved) || cleaned.contains(.thousandsSeparatorRemoved) || cleaned.contains(.parenthesesNegative) {
                                note(.warning, record.line, names[column], "number_cleaned", "\"\(String(decoding: value, as: UTF8.self))\" read as a number")
                            }
                        }
                        switch stored {
                        case .null: batch.appendNull()
                        case .int(let v): batch.append(int: v)
                        case .double(let v): batch.append(double: v)
                        case .text(let bytes): batch.append(text: bytes)
                        case .ownedText(let text): batch.append(text: text)
                        }
                        // First three distinct values, compared as raw bytes so that a column with few
                        // distinct values costs no conversion per row.
                        // Samples are cut to `maxSampleCharacters`, so a huge cell never makes `get` huge.
                        if samples[column].count < 3,
                            case let sampleKey = value.prefix(Self.maxSampleCharacters * 4),
                            !sampleBytes[column].contains(where: { $0.elementsEqual(sampleKey) }) {
                            sampleBytes[column].append(Array(sampleKey))
                            let json = Self.sample(Self.json(stored, type: decisions[column].type))
                            if !samples[column].contains(json) { samples[column].append(json) }
                        }
                    }
                }
                batch.endRow()
                rows += 1
                if batch.isFull {
                    try inserter.submit(batch)
                    batch = try inserter.emptyBatch()
                }
                if rows & 0x3FFF == 0 {
                    if isCancelled() { throw Cancelled() }
                    progress(reader.bytesConsumed, rows)
                }
            }
            // A header of blank names and no rows is neither a header nor a row.
            guard rows > 0 || layout.names?.contains(where: { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) == true else {
                throw IngestionFailure("neither a header nor any row could be read from the file")
            }
            if batch.rows > 0 { try inserter.submit(batch) }
            try inserter.finish()
            try sink.finish(issues: issues)
        } catch {
            // The insert stage stops before the sink is abandoned; the caller removes a table file.
            inserter.abort()
            sink.abandon()
            throw error
        }
        progress(fileSize, rows)
        let columns = names.indices.map {
            DataColumn(name: names[$0], type: decisions[$0].type, sampleValues: samples[$0], cleaning: tallies[$0].notes(decisions[$0]))
        }
        return IngestionResult(
            columns: columns, rowCount: rows,
            stats: ProcessingStats(cleanedRows: rows, errors: errors, warnings: warnings),
            issues: issues.prefix(100).map {
                ProcessingIssue(severity: ProcessingIssue.Severity(rawValue: $0.severity) ?? .error, line: $0.line, column: $0.column, kind: $0.kind, reason: $0.reason)
            })
    }

    /// Sample values longer than this many characters are cut there and end with "…".
    static let maxSampleCharacters = 200

    static func sample(_ value: JSONValue) -> JSONValue {
        guard case .string(let text) = value, text.utf8.count > maxSampleCharacters, text.count > maxSampleCharacters else { return value }
        return .string(String(text.prefix(maxSampleCharacters)) + "…")
    }

    static func json(_ stored: StoredValue, type: ColumnType) -> JSONValue {
        switch (stored, type) {
        case (.null, _): return .null
        case (.int(let v), .boolean): return .bool(v != 0)
        case (.int(let v), _): return .int(v)
        case (.double(let v), .datetime): return .string(CellParsing.formatDatetime(v))
        case (.double(let v), _): return .double(v)
        case (.text(let bytes), _): return .string(String(decoding: bytes, as: UTF8.self))
        case (.ownedText(let text), _): return .string(text)
        }
    }
}
