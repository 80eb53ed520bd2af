import Foundation

/// How a delimited file separates fields: `delimiter` nil reads whole lines (plain text).
struct Dialect: Equatable, Sendable {
    var delimiter: UInt8?
    var quote: UInt8?

    static let csv = Dialect(delimiter: 0x2C, quote: 0x22)
    static let lines = Dialect(delimiter: nil, quote: nil)
}

/// RFC 4180 and its common variations, parsed byte by byte: any delimiter, `"` or `'`
/// quotes with doubled-quote escapes, newlines inside quotes, CRLF / LF / CR line ends.
/// Leniencies: text after a closing quote is kept; a quote inside an unquoted field is
/// literal; blank lines are skipped (and noted on the next record); spaces before an opening
/// quote are skipped (`a, "b, c"`), as Python's `skipinitialspace` does.
struct DelimitedReader: RecordReader {
    let dialect: Dialect
    /// Transcode bytes ≥ 0x80 from Latin-1 to UTF-8 as they are copied.
    let latin1: Bool
    private var input: ChunkedInput
    private var nextLine = 1

    var declaredColumns: [String]? { nil }
    var bytesConsumed: Int64 { input.bytesConsumed }

    private var pendingBlank = false
    /// The table's width once known: records that a stray quote made the wrong width are
    /// repaired against it.
    var expectedWidth: Int?

    /// `firstLine` is the line number of the byte at `prefix`, when reading starts mid-file.
    init(url: URL, dialect: Dialect, latin1: Bool, skipping prefix: Int, firstLine: Int = 1) throws {
        self.dialect = dialect
        self.latin1 = latin1
        input = try ChunkedInput(url: url, skipping: prefix)
        nextLine = firstLine
    }

    private enum Outcome { case record(end: Int, lines: Int), needMore, blank(end: Int, lines: Int) }

    mutating func next(into record: inout Record) throws -> Bool {
        while true {
            if input.position >= input.filled, !(try input.refill()) {
                return false
            }
            record.reset()
            record.offset = input.bytesConsumed
            record.blankBefore = pendingBlank
            let outcome = input.buffer.withUnsafeBufferPointer { buffer in
                parse(buffer, from: input.position, to: input.filled, atEnd: input.atEnd, into: &record)
            }
            switch outcome {
            case .record(var end, var lines):
                if lines > 1 || record.problem != nil, let width = expectedWidth, record.fieldCount != width {
                    repairStrayQuote(&record, width: width, end: &end, lines: &lines)
                }
                record.line = nextLine
                nextLine += lines
                input.position = end
                pendingBlank = false
                return true
            case .blank(let end, let lines):
                nextLine += lines
                input.position = end
                pendingBlank = true
            case .needMore:
                if !(try input.refill()) {
                    // End of file inside a record: parse what is there as the last record.
                    record.reset()
                    record.offset = input.bytesConsumed
                    record.blankBefore = pendingBlank
                    let last = input.buffer.withUnsafeBufferPointer { buffer in
                        parse(buffer, from: input.position, to: input.filled, atEnd: true, into: &record)
                    }
                    switch last {
                    case .record(var end, var lines):
                        if lines > 1 || record.problem != nil, let width = expectedWidth, record.fieldCount != width {
                            repairStrayQuote(&record, width: width, end: &end, lines: &lines)
                        }
                        record.line = nextLine
                        nextLine += lines
                        input.position = end
                        return true
                    case .blank(let end, _):
                        input.position = end
                        return false
                    case .needMore:
                        return false
                    }
                }
            }
        }
    }

    /// A record whose quoted field ran over a line end (or to the end of the file) and that
    /// came out with the wrong width: when its first line alone, a quote that does not close
    /// on the line read as text, has the table's width, that line is the record.
    private func repairStrayQuote(_ record: inout Record, width: Int, end: inout Int, lines: inout Int) {
        var line = Record()
        line.offset = record.offset
        line.blankBefore = record.blankBefore
        let outcome = input.buffer.withUnsafeBufferPointer { buffer in
            parse(buffer, from: input.position, to: input.filled, atEnd: true, into: &line, lineBound: true)
        }
        guard case .record(let lineEnd, let lineCount) = outcome, line.fieldCount == width else { return }
        line.repaired = true
        swap(&record, &line)
        end = lineEnd
        lines = lineCount
    }

    @inline(__always) private func append(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, to record: inout Record) {
        guard !range.isEmpty else { return }
        if latin1 {
            for i in range {
                let c = b[i]
                if c < 0x80 {
                    record.bytes.append(c)
                } else {
                    record.bytes.append(0xC0 | (c >> 6))
                    record.bytes.append(0x80 | (c & 0x3F))
                }
            }
        } else {
            record.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[range]))
        }
    }

    /// With `lineBound`, a quote that does not close before the line ends is read as text
    /// (the stray-quote repair).
    private func parse(
        _ b: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, atEnd: Bool, into record: inout Record, lineBound: Bool = false
    ) -> Outcome {
        let delimiter = dialect.delimiter
        let quote = dialect.quote
        var i = start
        var lines = 1
        var fieldHasContent = false
        while true {
            var quotedDone = false
            // At the start of a field: spaces before an opening quote are skipped.
            if let quote, i < end, b[i] == 0x20, delimiter != 0x20 {
                var j = i + 1
                while j < end, b[j] == 0x20 { j += 1 }
                if j == end && !atEnd { return .needMore }
                if j < end, b[j] == quote { i = j }
            }
            if let quote, i < end, b[i] == quote {
                fieldHasContent = true
                let quoteAt = i
                let fieldBytes = record.bytes.count
                i += 1
                var runStart = i
                var closed = false
                var stray = false
                while i < end {
                    let c = b[i]
                    if c == quote {
                        if i + 1 < end, b[i + 1] == quote {
                            append(b, runStart..<(i + 1), to: &record)
                            i += 2
                            runStart = i
                            continue
                        }
                        if i + 1 == end && !atEnd { return .needMore }
                        append(b, runStart..<i, to: &record)
                        i += 1
                        closed = true
                        break
                    }
                    if c == 0x0A || c == 0x0D {
                        if lineBound {
                            stray = true
                            break
                        }
                        if c == 0x0A || !(i + 1 < end && b[i + 1] == 0x0A) { lines += 1 }
                    }
                    i += 1
                }
                if stray {
                    // The quote is text: read the field again after it, unquoted.
                    record.bytes.removeSubrange(fieldBytes...)
                    i = quoteAt + 1
                } else {
                    if !closed {
                        if !atEnd { return .needMore }
                        append(b, runStart..<i, to: &record)
                        record.problem = "unterminated quoted field"
                        record.endField()
                        return .record(end: i, lines: lines)
                    }
                    // Anything between the closing quote and the delimiter is kept as text.
                    let tailStart = i
                    while i < end, b[i] != delimiter ?? 0x0A, b[i] != 0x0A, b[i] != 0x0D { i += 1 }
                    append(b, tailStart..<i, to: &record)
                    quotedDone = true
                }
            }
            if !quotedDone {
                let fieldStart = i
                if let delimiter {
                    while i < end {
                        let c = b[i]
                        if c == delimiter || c == 0x0A || c == 0x0D { break }
                        i += 1
                    }
                } else {
                    while i < end, b[i] != 0x0A, b[i] != 0x0D { i += 1 }
                }
                if i > fieldStart { fieldHasContent = true }
                append(b, fieldStart..<i, to: &record)
            }
            if i >= end {
                if !atEnd { return .needMore }
                record.endField()
                if record.fieldCount == 1 && !fieldHasContent { return .blank(end: i, lines: 0) }
                return .record(end: i, lines: lines - 1)
            }
            let c = b[i]
            if let delimiter, c == delimiter {
                record.endField()
                fieldHasContent = true
                i += 1
                continue
            }
            // A line end finishes the record.
            record.endField()
            if c == 0x0D {
                if i + 1 >= end && !atEnd { return .needMore }
                i += (i + 1 < end && b[i + 1] == 0x0A) ? 2 : 1
            } else {
                i += 1
            }
            if record.fieldCount == 1 && !fieldHasContent { return .blank(end: i, lines: lines) }
            return .record(end: i, lines: lines)
        }
    }
}
