import Foundation
import DataSourceDomain
import JSONKit

/// Where the table is in a delimited file, decided from the first records before any value
/// is read: how wide it is (the data rows' most common width, never the header's), which
/// leading lines are a preamble, how many rows form the header and what its names are, and
/// where the data rows start.
struct TableLayout {
    /// Raw header names, exactly `width` of them; nil when the file has no header row.
    var names: [String]?
    var width: Int
    /// Byte offset of the first data row, and its line.
    var dataStart: Int64
    var firstDataLine: Int
    /// What detection repaired or skipped, recorded as warnings.
    var notes: [(line: Int, kind: String, reason: String)] = []

    /// At most this many leading lines are considered a preamble.
    static let maxPreamble = 30
    /// At most this many rows form a header.
    static let maxHeaderRows = 3

    /// `records` are the first records read from the start of the text (`skip` bytes in),
    /// `prefix` the text's first bytes from there; `end` the text's size in bytes.
    static func detect(
        records: [Record], prefix: [UInt8], skip: Int, end: Int64, dialect: Dialect, header forced: Bool?
    ) -> TableLayout {
        let widths = records.map(\.fieldCount)
        var width = modalWidth(widths[...])
        var start = preambleLength(records, width: width, dialect: dialect, prefix: prefix, skip: skip)
        // The table ends at the first blank line after its first rows; its width is the mode
        // of the rows before that, so a wider second table does not decide it.
        let cut = tableCut(records, from: start)
        if cut - start >= 2 {
            let tableWidth = modalWidth(widths[start..<cut])
            if tableWidth != width {
                width = tableWidth
                start = preambleLength(records, width: width, dialect: dialect, prefix: prefix, skip: skip)
            }
        }
        var layout = TableLayout(names: nil, width: width, dataStart: end, firstDataLine: (records.last?.line ?? 0) + 1)
        if start > 0 {
            let lines = records[start - 1].line == records[0].line ? "line \(records[0].line)" : "lines \(records[0].line)–\(records[start - 1].line)"
            layout.notes.append((records[0].line, "preamble_skipped", "\(lines) before the table skipped as a preamble"))
        }
        guard start < records.count else { return layout }
        let tableEnd = max(tableCut(records, from: start), start + 1)
        let first = records[start]

        // A header delimited differently from the body: re-split the line with the delimiter
        // that gives the table's width. A header whose stray quote ran into the rows: its own line.
        var resplit: [String]?
        var stray: (names: [String], next: Int)?
        if first.fieldCount < width - 1, start + 1 < records.count {
            resplit = splitOtherwise(first, dialect: dialect, width: width)
        }
        if resplit == nil, forced != false {
            stray = strayQuoteLine(records, at: start, width: width, dialect: dialect, prefix: prefix, skip: skip)
        }

        var headerRows = 0
        if forced != false {
            if resplit != nil || stray != nil || forced == true {
                headerRows = 1
            }
            // The data rows are judged below the deepest header (when the table is long enough).
            let dataFrom = tableEnd - start > maxHeaderRows + 1 ? start + maxHeaderRows : start + 1
            let data = Array(records[dataFrom..<tableEnd].filter { $0.fieldCount == width }.prefix(500))
            if headerRows == 0 {
                headerRows = SourceInspection.looksLikeHeader(first: first, rest: data) ? 1 : 0
            }
            if headerRows == 1, forced == nil, resplit == nil, stray == nil {
                // More header rows: rows that, against the data below all header rows, have
                // text where the data has numbers, dates or booleans, and no value that fits.
                while headerRows < maxHeaderRows, start + headerRows < min(dataFrom, tableEnd - 1), !data.isEmpty,
                    isHeaderContinuation(records[start + headerRows], data: data)
                {
                    headerRows += 1
                }
            }
        }

        var names: [String]?
        let dataIndex = start + headerRows
        if headerRows > 0 {
            if let resplit {
                names = resplit
                layout.notes.append((first.line, "header_repaired", "the header is delimited differently from the rows; split again"))
            } else if let stray {
                names = stray.names
                layout.notes.append((first.line, "header_repaired", "a stray quote in the header was ignored"))
            } else {
                var rows = (start..<(start + headerRows)).map { i in (0..<records[i].fieldCount).map { records[i].fieldString($0) } }
                if headerRows > 1 {
                    // Upper rows name groups of columns (merged cells): carry a name right.
                    for r in 0..<(rows.count - 1) {
                        var carried = ""
                        for c in rows[r].indices {
                            let name = rows[r][c].trimmingCharacters(in: .whitespaces)
                            if name.isEmpty { rows[r][c] = carried } else { carried = name }
                        }
                    }
                    let joinedWidth = rows.map(\.count).max() ?? width
                    names = (0..<joinedWidth).map { c in
                        rows.compactMap { c < $0.count ? $0[c].trimmingCharacters(in: .whitespaces) : nil }.filter { !$0.isEmpty }.joined(separator: " / ")
                    }
                    layout.notes.append((first.line, "header_joined", "\(headerRows) header rows joined into one name per column"))
                } else {
                    names = rows[0]
                }
            }
        }
        if let stray {
            layout.dataStart = Int64(skip) + Int64(stray.next)
            layout.firstDataLine = first.line + 1
        } else if dataIndex < records.count {
            layout.dataStart = records[dataIndex].offset
            layout.firstDataLine = records[dataIndex].line
        } else {
            layout.dataStart = end
        }
        if var header = names, header.count != width {
            let had = header.count
            if header.count < width {
                header += (header.count..<width).map { "column_\($0 + 1)" }
            } else {
                // Empty names past the width go first; then the extra names are merged into the last.
                while header.count > width, let last = header.last, last.trimmingCharacters(in: .whitespaces).isEmpty { header.removeLast() }
                if header.count > width {
                    let merged = header[(width - 1)...].map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
                    header = Array(header[..<(width - 1)]) + [merged]
                }
            }
            names = header
            layout.notes.append((first.line, "header_repaired",
                "the header has \(had) fields where the rows have \(width); " + (had < width ? "padded with column_N names" : "extra names merged")))
        }
        layout.names = names
        return layout
    }

    /// The most common value (the larger on ties).
    static func modalWidth(_ widths: ArraySlice<Int>) -> Int {
        var frequency: [Int: Int] = [:]
        for w in widths { frequency[w, default: 0] += 1 }
        return frequency.max { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) }?.key ?? 1
    }

    /// Leading records that are not part of a table `width` wide: title and note lines, much
    /// narrower than the table or with at most one value in a wide row. A narrow line stops
    /// the preamble when it is the header after all: split by another delimiter, or cut short
    /// by a stray quote that ran over its line end.
    static func preambleLength(_ records: [Record], width: Int, dialect: Dialect, prefix: [UInt8], skip: Int) -> Int {
        guard width > 1 else { return 0 }
        var i = 0
        while i < min(records.count - 1, maxPreamble) {
            let record = records[i]
            if record.fieldCount < width - 1, splitOtherwise(record, dialect: dialect, width: width) != nil { break }
            if strayQuoteLine(records, at: i, width: width, dialect: dialect, prefix: prefix, skip: skip) != nil { break }
            // A title in a row as wide as the table: one value, and not a number (a sparse data row).
            let values = (0..<record.fieldCount).filter { record.withField($0) { !CellParsing.trimmed($0).isEmpty } }
            if width >= 3 && values.count <= 1 && !values.contains(where: { record.withField($0) { CellParsing.number(CellParsing.trimmed($0)) != nil } }) {
                i += 1
                continue
            }
            guard record.fieldCount < width else { break }
            if record.fieldCount == width - 1 {
                // One field short: a header missing a name, unless the next row is the header.
                let rest = Array(records[(i + 2)...].filter { $0.fieldCount == width }.prefix(200))
                guard records[i + 1].fieldCount >= width - 1, !rest.isEmpty,
                    SourceInspection.looksLikeHeader(first: records[i + 1], rest: rest),
                    !SourceInspection.looksLikeHeader(first: record, rest: rest) || record.fieldCount < records[i + 1].fieldCount
                else { break }
            }
            i += 1
        }
        return i
    }

    /// When record `i` is a line whose stray quote ran over its line end (it spans lines and a
    /// field holds a line break), its own line and where the next line starts — if that line
    /// split by the delimiter, quotes ignored, is about as wide as the table.
    static func strayQuoteLine(_ records: [Record], at i: Int, width: Int, dialect: Dialect, prefix: [UInt8], skip: Int)
        -> (names: [String], next: Int)?
    {
        let record = records[i]
        guard i + 1 < records.count, records[i + 1].line - record.line > 1,
            (0..<record.fieldCount).contains(where: { record.fieldString($0).contains(where: \.isNewline) }),
            let line = physicalLine(at: record.offset - Int64(skip), in: prefix)
        else { return nil }
        let names = split(line.bytes, delimiter: dialect.delimiter ?? 0x2C).map { String(decoding: $0.filter { $0 != dialect.quote }, as: UTF8.self) }
        guard abs(names.count - width) <= 1 else { return nil }
        return (names, line.next)
    }

    /// The first record after `start + 1` that follows a blank line and is not as wide as the
    /// rows before it: where a second table starts (or `records.count`).
    static func tableCut(_ records: [Record], from start: Int) -> Int {
        guard start + 2 < records.count else { return records.count }
        let width = modalWidth(records[start..<min(records.count, start + 50)].map(\.fieldCount)[...])
        for i in (start + 2)..<records.count where records[i].blankBefore && records[i].fieldCount != width {
            return i
        }
        return records.count
    }

    /// The record's text split by another common delimiter into exactly `width` fields.
    static func splitOtherwise(_ record: Record, dialect: Dialect, width: Int) -> [String]? {
        let text = Array((0..<record.fieldCount).map { record.fieldString($0) }.joined(separator: String(UnicodeScalar(dialect.delimiter ?? 0x2C))).utf8)
        for delimiter: UInt8 in [0x2C, 0x3B, 0x09, 0x7C] where delimiter != dialect.delimiter {
            let parts = split(text, delimiter: delimiter)
            if parts.count == width {
                return parts.map { String(decoding: $0.filter { $0 != 0x22 && $0 != 0x27 }, as: UTF8.self) }
            }
        }
        return nil
    }

    static func split(_ bytes: [UInt8], delimiter: UInt8) -> [[UInt8]] {
        bytes.split(separator: delimiter, omittingEmptySubsequences: false).map(Array.init)
    }

    /// The line starting at `offset` in `prefix`, without its line end, and where the next begins.
    static func physicalLine(at offset: Int64, in prefix: [UInt8]) -> (bytes: [UInt8], next: Int)? {
        guard offset >= 0, offset < Int64(prefix.count) else { return nil }
        let start = Int(offset)
        guard let end = prefix[start...].firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) else { return nil }
        let next = prefix[end] == 0x0D && end + 1 < prefix.count && prefix[end + 1] == 0x0A ? end + 2 : end + 1
        return (Array(prefix[start..<end]), next)
    }

    /// A row that continues a header: against the data rows, it has text where a column has
    /// numbers, dates or booleans, and none of its values fits its column's type; and it has
    /// an empty cell (units rows do) unless three or more columns say so.
    static func isHeaderContinuation(_ row: Record, data: [Record]) -> Bool {
        var headerVotes = 0
        var empty = false
        for column in 0..<row.fieldCount {
            let value = row.fieldString(column).trimmingCharacters(in: .whitespaces)
            if value.isEmpty { empty = true; continue }
            var profile = ColumnProfile()
            for record in data where column < record.fieldCount {
                record.withField(column) { raw in
                    let v = CellParsing.trimmed(raw)
                    if !CellParsing.isNullToken(v, extra: []) { profile.observe(v) }
                }
            }
            let decision = profile.decision
            guard decision.type != .string else { continue }
            var cleaned = CellParsing.Cleaning()
            let fits = Array(value.utf8).withUnsafeBufferPointer { StoredValue.convert($0, as: decision, cleaned: &cleaned) != nil }
            if fits { return false }
            headerVotes += 1
        }
        return headerVotes >= (empty ? 1 : 3)
    }

    /// Whether a record after a blank line starts another table: the header again, or text in
    /// every typed column it has a value in where the table has numbers, dates or booleans (a
    /// title, another header). When the table has no typed column, a different width says so.
    /// A short data row after a blank line fits its columns, so it stays.
    static func startsAnotherTable(_ record: Record, width: Int, names: [String]?, decisions: [ColumnDecision]) -> Bool {
        guard record.blankBefore else { return false }
        if let names, names.count == record.fieldCount,
            names.indices.allSatisfy({ names[$0].trimmingCharacters(in: .whitespaces) == record.fieldString($0).trimmingCharacters(in: .whitespaces) })
        { return true }
        var typed = 0
        for column in 0..<min(record.fieldCount, decisions.count) where decisions[column].type != .string {
            let fits = record.withField(column) { raw -> Bool? in
                let value = CellParsing.trimmed(raw)
                if CellParsing.isNullToken(value, extra: []) { return nil }
                var cleaned = CellParsing.Cleaning()
                return StoredValue.convert(value, as: decisions[column], cleaned: &cleaned) != nil
            }
            guard let fits else { continue }
            if fits { return false }
            typed += 1
        }
        if typed > 0 { return true }
        return !decisions.contains { $0.type != .string } && record.fieldCount != width
    }
}

/// Replays records already read (the sample) as a reader.
struct SampleReader: RecordReader {
    let records: [Record]
    var index = 0
    var declaredColumns: [String]? { nil }
    var bytesConsumed: Int64 { 0 }

    init(records: [Record]) { self.records = records }

    mutating func next(into record: inout Record) throws -> Bool {
        guard index < records.count else { return false }
        record = records[index]
        index += 1
        return true
    }
}

/// Per column: how many values each cleaning rule changed, and the first change.
struct CleaningTally {
    enum Rule: Int, CaseIterable {
        case whitespaceTrimmed, nullTokenReplaced, currencySymbolRemoved, thousandsSeparatorRemoved, parenthesesNegative
        case dateReformatted, dateOrderAssumed, booleanNormalized

        var rule: CleaningRule {
            switch self {
            case .whitespaceTrimmed: .whitespaceTrimmed
            case .nullTokenReplaced: .nullTokenReplaced
            case .currencySymbolRemoved: .currencySymbolRemoved
            case .thousandsSeparatorRemoved: .thousandsSeparatorRemoved
            case .parenthesesNegative: .parenthesesNegative
            case .dateReformatted: .dateReformatted
            case .dateOrderAssumed: .dateOrderAssumed
            case .booleanNormalized: .booleanNormalized
            }
        }

        var flag: CellParsing.Cleaning? {
            switch self {
            case .currencySymbolRemoved: .currencySymbolRemoved
            case .thousandsSeparatorRemoved: .thousandsSeparatorRemoved
            case .parenthesesNegative: .parenthesesNegative
            case .dateReformatted: .dateReformatted
            case .dateOrderAssumed: .dateOrderAssumed
            case .booleanNormalized: .booleanNormalized
            default: nil
            }
        }
    }

    var counts = [Int](repeating: 0, count: Rule.allCases.count)
    var examples = [(from: String, to: JSONValue)?](repeating: nil, count: Rule.allCases.count)

    mutating func count(_ rule: Rule, from: UnsafeBufferPointer<UInt8>, to: JSONValue) {
        counts[rule.rawValue] += 1
        if examples[rule.rawValue] == nil {
            examples[rule.rawValue] = (String(decoding: from.prefix(IngestionPipeline.maxSampleCharacters), as: UTF8.self), IngestionPipeline.sample(to))
        }
    }

    mutating func count(_ applied: CellParsing.Cleaning, from: UnsafeBufferPointer<UInt8>, to: JSONValue) {
        for rule in Rule.allCases { if let flag = rule.flag, applied.contains(flag) { count(rule, from: from, to: to) } }
    }

    func notes(_ decision: ColumnDecision) -> [CleaningNote] {
        Rule.allCases.compactMap { rule in
            guard counts[rule.rawValue] > 0 else { return nil }
            var detail: String?
            if rule == .dateOrderAssumed { detail = decision.slashOrder == .dayMonthYear ? "DD/MM/YYYY" : "MM/DD/YYYY" }
            return CleaningNote(rule: rule.rule, count: counts[rule.rawValue], from: examples[rule.rawValue]?.from, to: examples[rule.rawValue]?.to, detail: detail)
        }
    }
}
