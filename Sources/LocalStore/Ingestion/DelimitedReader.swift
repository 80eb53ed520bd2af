import Foundation

/// How a delimited file separates fields: `delimiter` nil reads whole lines (plain text).
struct Dialect: Equatable, Sendable {
    var delimiter: UInt8?
    var quote: UInt8?

    static let csv = Dialect(delimiter: 0x2C, quote: 0x22)
    static let lines = Dialect(delimiter: nil, quote: nil)
}

/// Where `DelimitedReader.parse` writes a record's field bytes and ends: raw memory sized
/// before each record, so that a field costs no array growth check; the record is copied
/// into its `Record` once, whole.
final class FieldScratch {
    private(set) var bytes: UnsafeMutablePointer<UInt8>
    private var byteCapacity: Int
    var count = 0
    private(set) var ends: UnsafeMutablePointer<Int>
    private var endCapacity: Int
    var endCount = 0

    init() {
        byteCapacity = 1 << 12
        bytes = .allocate(capacity: byteCapacity)
        endCapacity = 64
        ends = .allocate(capacity: endCapacity)
    }

    deinit {
        bytes.deallocate()
        ends.deallocate()
    }

    /// Makes room for `needed` bytes in all.
    func reserve(_ needed: Int) {
        guard needed > byteCapacity else { return }
        var capacity = byteCapacity
        while capacity < needed { capacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        grown.update(from: bytes, count: count)
        bytes.deallocate()
        bytes = grown
        byteCapacity = capacity
    }

    @inline(__always) func endField() {
        if endCount == endCapacity { growEnds() }
        ends[endCount] = count
        endCount += 1
    }

    private func growEnds() {
        let grown = UnsafeMutablePointer<Int>.allocate(capacity: endCapacity * 2)
        grown.update(from: ends, count: endCount)
        ends.deallocate()
        ends = grown
        endCapacity *= 2
    }

    /// Copies the record parsed so far into `record` (whose fields are empty).
    func flush(into record: inout Record) {
        record.bytes.append(contentsOf: UnsafeBufferPointer(start: bytes, count: count))
        record.ends.append(contentsOf: UnsafeBufferPointer(start: ends, count: endCount))
    }
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
    private let scratch = FieldScratch()

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

    /// Appends source bytes to the field being parsed (room was reserved for the record).
    @inline(__always) private func append(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        guard !range.isEmpty else { return }
        let scratch = self.scratch
        if latin1 {
            var out = scratch.bytes + scratch.count
            for i in range {
                let c = b[i]
                if c < 0x80 {
                    out.pointee = c
                    out += 1
                } else {
                    out[0] = 0xC0 | (c >> 6)
                    out[1] = 0x80 | (c & 0x3F)
                    out += 2
                }
            }
            scratch.count = out - scratch.bytes
        } else {
            (scratch.bytes + scratch.count).update(from: b.baseAddress! + range.lowerBound, count: range.count)
            scratch.count += range.count
        }
    }

    private static let everyByte: UInt64 = 0x0101_0101_0101_0101
    private static let newlines: UInt64 = 0x0A * everyByte
    private static let returns: UInt64 = 0x0D * everyByte

    /// The high bit of the lowest zero byte of `word` (and maybe of bytes above it, never below).
    @inline(__always) private static func zeroBytes(_ word: UInt64) -> UInt64 {
        (word &- everyByte) & ~word & 0x8080_8080_8080_8080
    }

    /// With `lineBound`, a quote that does not close before the line ends is read as text
    /// (the stray-quote repair).
    private func parse(
        _ b: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, atEnd: Bool, into record: inout Record, lineBound: Bool = false
    ) -> Outcome {
        scratch.count = 0
        scratch.endCount = 0
        // A record's text is at most its bytes in the source (twice that from Latin-1).
        scratch.reserve((end - start) * (latin1 ? 2 : 1))
        let outcome = parseFields(b, from: start, to: end, atEnd: atEnd, problem: &record.problem, lineBound: lineBound)
        if case .record = outcome { scratch.flush(into: &record) }
        return outcome
    }

    private func parseFields(
        _ b: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, atEnd: Bool, problem: inout String?, lineBound: Bool
    ) -> Outcome {
        let scratch = self.scratch
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
                let fieldBytes = scratch.count
                i += 1
                var runStart = i
                var closed = false
                var stray = false
                while i < end {
                    let c = b[i]
                    if c == quote {
                        if i + 1 < end, b[i + 1] == quote {
                            append(b, runStart..<(i + 1))
                            i += 2
                            runStart = i
                            continue
                        }
                        if i + 1 == end && !atEnd { return .needMore }
                        append(b, runStart..<i)
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
                    scratch.count = fieldBytes
                    i = quoteAt + 1
                } else {
                    if !closed {
                        if !atEnd { return .needMore }
                        append(b, runStart..<i)
                        problem = "unterminated quoted field"
                        scratch.endField()
                        return .record(end: i, lines: lines)
                    }
                    // Anything between the closing quote and the delimiter is kept as text.
                    let tailStart = i
                    while i < end, b[i] != delimiter ?? 0x0A, b[i] != 0x0A, b[i] != 0x0D { i += 1 }
                    append(b, tailStart..<i)
                    quotedDone = true
                }
            }
            if !quotedDone {
                let fieldStart = i
                if let delimiter {
                    #if _endian(little)
                    // Eight bytes at a time to the first delimiter or line end, then byte by byte.
                    let delimiters = UInt64(delimiter) &* Self.everyByte
                    while i + 8 <= end {
                        let word = UnsafeRawPointer(b.baseAddress! + i).loadUnaligned(as: UInt64.self)
                        let found = Self.zeroBytes(word ^ delimiters) | Self.zeroBytes(word ^ Self.newlines) | Self.zeroBytes(word ^ Self.returns)
                        if found != 0 {
                            i += found.trailingZeroBitCount >> 3
                            break
                        }
                        i += 8
                    }
                    #endif
                    while i < end {
                        let c = b[i]
                        if c == delimiter || c == 0x0A || c == 0x0D { break }
                        i += 1
                    }
                } else {
                    while i < end, b[i] != 0x0A, b[i] != 0x0D { i += 1 }
                }
                if i > fieldStart { fieldHasContent = true }
                append(b, fieldStart..<i)
            }
            if i >= end {
                if !atEnd { return .needMore }
                scratch.endField()
                if scratch.endCount == 1 && !fieldHasContent { return .blank(end: i, lines: 0) }
                return .record(end: i, lines: lines - 1)
            }
            let c = b[i]
            if let delimiter, c == delimiter {
                scratch.endField()
                fieldHasContent = true
                i += 1
                continue
            }
            // A line end finishes the record.
            scratch.endField()
            if c == 0x0D {
                if i + 1 >= end && !atEnd { return .needMore }
                i += (i + 1 < end && b[i + 1] == 0x0A) ? 2 : 1
            } else {
                i += 1
            }
            if scratch.endCount == 1 && !fieldHasContent { return .blank(end: i, lines: lines) }
            return .record(end: i, lines: lines)
        }
    }
}
