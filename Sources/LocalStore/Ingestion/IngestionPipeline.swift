import DataSourceDomain
import Foundation
import JSONKit

/// What processing produced.
struct IngestionResult: Sendable {
    var columns: [DataColumn]
    var rowCount: Int
    var stats: ProcessingStats
    var issues: [ProcessingIssue]
}

/// The formats a file can be read as.
enum SourceFormat: Equatable {
    case delimited(forcedDelimiter: UInt8?)
    case json
    case jsonLines
    case plainText
    case spreadsheet
    case pdf

    init?(contentType: String) {
        switch contentType.lowercased().split(separator: ";").first.map({ $0.trimmingCharacters(in: .whitespaces) }) ?? "" {
        case "text/csv", "application/csv", "text/x-csv", "application/vnd.ms-excel": self = .delimited(forcedDelimiter: nil)
        case "text/tab-separated-values", "text/tsv": self = .delimited(forcedDelimiter: 0x09)
        case "application/json", "text/json": self = .json
        case "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines", "application/ndjson":
            self = .jsonLines
        case "text/plain": self = .plainText
        case "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": self = .spreadsheet
        case "application/pdf": self = .pdf
        default: return nil
        }
    }
}

/// Reads a stored original, infers and cleans its columns, and writes the typed rows into a
/// fresh SQLite file. Types are inferred from a sample; a later value that does not fit
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
    let progress: (_ bytesDone: Int64, _ rows: Int) -> Void
    private let extraNulls: [[UInt8]]

    init(
        source: URL, contentType: String, options: ParseOptions, output: URL, workDirectory: URL,
        isCancelled: @escaping () -> Bool, progress: @escaping (Int64, Int) -> Void
    ) throws {
        guard let format = SourceFormat(contentType: contentType) else {
            throw IngestionFailure("unsupported format \(contentType): expected CSV, TSV, JSON, JSON Lines, plain text, XLSX or PDF")
        }
        self.source = source
        self.format = format
        self.options = options
        self.output = output
        self.workDirectory = workDirectory
        self.isCancelled = isCancelled
        self.progress = progress
        fileSize = (try? FileManager.default.attributesOfItem(atPath: source.path)[.size] as? Int64) ?? 0
        extraNulls = (options.nullValues ?? []).map { Array($0.utf8) }
    }

    struct Cancelled: Error {}
    private struct DoesNotFit: Error { var column: Int }

    func run() throws -> IngestionResult {
        switch format {
        case .spreadsheet: throw IngestionFailure("XLSX files cannot be read by this version of the agent yet")
        case .pdf: throw IngestionFailure("PDF files cannot be read by this version of the agent yet")
        default: break
        }
        let prefix = try SourceInspection.readPrefix(source)
        guard !prefix.isEmpty else { throw IngestionFailure("the file is empty") }
        var encoding = try SourceInspection.detectEncoding(source, prefix: prefix, forced: options.encoding)
        var textURL = source
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
        defer { if textURL != source { try? FileManager.default.removeItem(at: textURL) } }
        let latin1 = encoding == .latin1
        let skip: Int = { if case .utf8(let bom) = encoding { bom } else { 0 } }()

        let dialect: Dialect = try resolveDialect(textURL, skip: skip)
        let makeReader: () throws -> any RecordReader = { [format] in
            switch format {
            case .json: try JSONArrayReader(url: textURL, skipping: skip)
            case .jsonLines: try JSONLinesReader(url: textURL, latin1: latin1, skipping: skip)
            default: try DelimitedReader(url: textURL, dialect: dialect, latin1: latin1, skipping: skip)
            }
        }

        // Sample: header detection and first types.
        var reader = try makeReader()
        var sample: [Record] = []
        var record = Record()
        while sample.count <= Self.sampleSize, try reader.next(into: &record) {
            if record.problem == nil { sample.append(record) }
        }
        let names: [String]
        let hasHeader: Bool
        if let declared = reader.declaredColumns {
            names = declared
            hasHeader = false
        } else if let first = sample.first {
            hasHeader = options.header ?? (format == .plainText ? false : SourceInspection.looksLikeHeader(first: first, rest: Array(sample.dropFirst())))
            if hasHeader {
                names = (0..<first.fieldCount).map { first.fieldString($0) }
            } else {
                let width = sample.map(\.fieldCount).max() ?? 1
                names = format == .plainText ? ["text"] : (1...width).map { "column_\($0)" }
            }
        } else {
            throw IngestionFailure("no rows could be read from the file")
        }
        let columnNames = Self.cleanNames(names)
        guard !columnNames.isEmpty else { throw IngestionFailure("no columns found") }
        guard columnNames.count <= TableWriter.maxColumns else {
            throw IngestionFailure("too many columns: \(columnNames.count) (at most \(TableWriter.maxColumns))")
        }
        var profiles = [ColumnProfile](repeating: ColumnProfile(), count: columnNames.count)
        for row in sample.dropFirst(hasHeader ? 1 : 0) { observe(row, into: &profiles) }
        var decisions = profiles.map(\.decision)

        // Load; on a value that does not fit, profile the whole file and load again.
        do {
            return try load(makeReader(), skipHeader: hasHeader, names: columnNames, decisions: decisions)
        } catch is DoesNotFit {
            profiles = [ColumnProfile](repeating: ColumnProfile(), count: columnNames.count)
            var full = try makeReader()
            var first = true
            while try full.next(into: &record) {
                if first && hasHeader { first = false; continue }
                first = false
                if record.problem == nil { observe(record, into: &profiles) }
                if isCancelled() { throw Cancelled() }
            }
            decisions = profiles.map(\.decision)
            return try load(makeReader(), skipHeader: hasHeader, names: columnNames, decisions: decisions)
        }
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
                let value = CellParsing.trimmed(raw)
                if !CellParsing.isNullToken(value, extra: extraNulls) { profiles[column].observe(value, textOnly: record.isTextOnly(column)) }
            }
        }
    }

    /// Blank names become `column_N`; repeated names get `_2`, `_3`.
    static func cleanNames(_ raw: [String]) -> [String] {
        var used = Set<String>()
        var result: [String] = []
        for (index, name) in raw.enumerated() {
            var base = name.trimmingCharacters(in: .whitespacesAndNewlines)
            if base.isEmpty { base = "column_\(index + 1)" }
            var candidate = base
            var suffix = 2
            while used.contains(candidate) {
                candidate = "\(base)_\(suffix)"
                suffix += 1
            }
            used.insert(candidate)
            result.append(candidate)
        }
        return result
    }

    private func load(_ reader: any RecordReader, skipHeader: Bool, names: [String], decisions: [ColumnDecision]) throws -> IngestionResult {
        var reader = reader
        let writer = try TableWriter(path: output.path, columnCount: names.count)
        var issues: [(line: Int, column: String?, severity: String, kind: String, reason: String)] = []
        var warnings = 0
        var errors = 0
        func note(_ severity: ProcessingIssue.Severity, _ line: Int, _ column: String?, _ kind: String, _ reason: String) {
            if severity == .warning { warnings += 1 } else { errors += 1 }
            if issues.count < Self.keptIssues { issues.append((line, column, severity.rawValue, kind, reason)) }
        }
        var samples = [[JSONValue]](repeating: [], count: names.count)
        var sampleBytes = [[[UInt8]]](repeating: [], count: names.count)
        var rows = 0
        var record = Record()
        var first = true
        let columnCount = names.count
        while try reader.next(into: &record) {
            if first {
                first = false
                if skipHeader { continue }
            }
            if let problem = record.problem {
                note(.error, record.line, nil, "unparseable_row", problem)
                continue
            }
            if record.fieldCount > columnCount {
                note(.error, record.line, nil, "extra_fields", "\(record.fieldCount) fields where the header has \(columnCount); the extra fields were dropped")
            } else if record.fieldCount < columnCount {
                note(.warning, record.line, nil, "short_row", "\(record.fieldCount) fields where the header has \(columnCount); padded with nulls")
            }
            try record.bytes.withUnsafeBufferPointer { buffer in
                for column in 0..<columnCount {
                    let index = Int32(column + 1)
                    guard column < record.fieldCount else { writer.bindNull(index); continue }
                    let start = column == 0 ? 0 : record.ends[column - 1]
                    let value = CellParsing.trimmed(UnsafeBufferPointer(rebasing: buffer[start..<record.ends[column]]))
                    if CellParsing.isNullToken(value, extra: extraNulls) { writer.bindNull(index); continue }
                    var cleaned = false
                    if record.isTextOnly(column), decisions[column].type == .number || decisions[column].type == .boolean {
                        throw DoesNotFit(column: column)
                    }
                    guard let stored = StoredValue.convert(value, as: decisions[column], cleaned: &cleaned) else {
                        throw DoesNotFit(column: column)
                    }
                    if cleaned {
                        note(.warning, record.line, names[column], "number_cleaned", "\"\(String(decoding: value, as: UTF8.self))\" read as a number")
                    }
                    switch stored {
                    case .null: writer.bindNull(index)
                    case .int(let v): writer.bind(index, int: v)
                    case .double(let v): writer.bind(index, double: v)
                    case .text(let bytes): writer.bind(index, borrowedText: bytes)
                    case .ownedText(let text): writer.bind(index, text: text)
                    }
                    // First three distinct values, compared as raw bytes so that a column with few
                    // distinct values costs no conversion per row.
                    // Samples are cut to `maxSampleCharacters`, so a huge cell never makes `get` huge.
                    let sampleKey = value.prefix(Self.maxSampleCharacters * 4)
                    if samples[column].count < 3, !sampleBytes[column].contains(where: { $0.elementsEqual(sampleKey) }) {
                        sampleBytes[column].append(Array(sampleKey))
                        let json = Self.sample(Self.json(stored, type: decisions[column].type))
                        if !samples[column].contains(json) { samples[column].append(json) }
                    }
                }
                try writer.step()
            }
            rows += 1
            if rows & 0x3FFF == 0 {
                if isCancelled() { writer.close(); throw Cancelled() }
                progress(reader.bytesConsumed, rows)
            }
        }
        guard rows > 0 else {
            writer.close()
            throw IngestionFailure(skipHeader ? "the file has a header row but no data rows" : "no rows could be read from the file")
        }
        try writer.finish(issues: issues)
        progress(fileSize, rows)
        let columns = names.indices.map { DataColumn(name: names[$0], type: decisions[$0].type, sampleValues: samples[$0]) }
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
