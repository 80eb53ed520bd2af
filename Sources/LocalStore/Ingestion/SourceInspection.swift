import DataSourceDomain
import Foundation

/// What the first bytes of a file say: its text encoding, whether it is binary, and for
/// delimited text its dialect and whether it starts with a header row.
enum TextEncoding: Equatable, Sendable {
    case utf8(bomLength: Int)
    case utf16LittleEndian
    case utf16BigEndian
    case latin1
}

enum SourceInspection {
    static let sniffBytes = 64 * 1024

    static func readPrefix(_ url: URL, count: Int = sniffBytes) throws -> [UInt8] {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        return Array(try handle.read(upToCount: count) ?? Data())
    }

    /// BOMs first; then the whole file is checked for valid UTF-8 (fast on ASCII), falling
    /// back to Latin-1, which every byte sequence is.
    static func detectEncoding(_ url: URL, prefix: [UInt8], forced: String?) throws -> TextEncoding {
        if let forced = forced?.lowercased().replacingOccurrences(of: "_", with: "-") {
            switch forced {
            case "utf-8", "utf8": return .utf8(bomLength: prefix.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0)
            case "utf-16le": return .utf16LittleEndian
            case "utf-16be": return .utf16BigEndian
            case "utf-16", "utf16": return prefix.starts(with: [0xFE, 0xFF]) ? .utf16BigEndian : .utf16LittleEndian
            case "latin-1", "latin1", "iso-8859-1", "iso8859-1", "windows-1252", "cp1252": return .latin1
            default: throw IngestionFailure("unsupported encoding \"\(forced)\" (supported: utf-8, utf-16, utf-16le, utf-16be, latin-1)")
            }
        }
        if prefix.starts(with: [0xEF, 0xBB, 0xBF]) { return .utf8(bomLength: 3) }
        if prefix.starts(with: [0xFF, 0xFE]) { return .utf16LittleEndian }
        if prefix.starts(with: [0xFE, 0xFF]) { return .utf16BigEndian }
        return try isValidUTF8(url) ? .utf8(bomLength: 0) : .latin1
    }

    static func isValidUTF8(_ url: URL) throws -> Bool {
        var input = try ChunkedInput(url: url)
        defer { input.close() }
        var pendingContinuations = 0
        var lead: UInt8 = 0
        while try input.refill() {
            let valid = input.buffer.withUnsafeBufferPointer { b -> Bool in
                var i = input.position
                let end = input.filled
                while i < end {
                    let c = b[i]
                    if pendingContinuations > 0 {
                        guard c & 0xC0 == 0x80 else { return false }
                        // Overlongs and surrogates: check the second byte against its lead.
                        if lead != 0 {
                            if (lead == 0xE0 && c < 0xA0) || (lead == 0xED && c > 0x9F)
                                || (lead == 0xF0 && c < 0x90) || (lead == 0xF4 && c > 0x8F)
                            { return false }
                            lead = 0
                        }
                        pendingContinuations -= 1
                        i += 1
                        continue
                    }
                    if c < 0x80 {
                        // Skip ASCII eight bytes at a time.
                        while i + 8 <= end {
                            let word = UnsafeRawPointer(b.baseAddress! + i).loadUnaligned(as: UInt64.self)
                            if word & 0x8080_8080_8080_8080 != 0 { break }
                            i += 8
                        }
                        if i < end, b[i] < 0x80 { i += 1 }
                        continue
                    }
                    switch c {
                    case 0xC2...0xDF: pendingContinuations = 1; lead = 0
                    case 0xE0...0xEF: pendingContinuations = 2; lead = c
                    case 0xF0...0xF4: pendingContinuations = 3; lead = c
                    default: return false
                    }
                    i += 1
                }
                return true
            }
            guard valid else { return false }
            input.position = input.filled
        }
        return pendingContinuations == 0
    }

    /// Rewrites a UTF-16 file as UTF-8 beside it, streaming, for the byte-level readers.
    static func transcodeUTF16(_ url: URL, bigEndian: Bool, to output: URL) throws {
        guard FileManager.default.createFile(atPath: output.path, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
        let out = try FileHandle(forWritingTo: output)
        defer { try? out.close() }
        var input = try ChunkedInput(url: url)
        defer { input.close() }
        var first = true
        var carry: [UInt8] = []
        var pendingHigh: UInt16?
        while try input.refill() {
            var units = carry + input.buffer[input.position..<input.filled]
            input.position = input.filled
            carry = units.count % 2 == 1 ? [units.removeLast()] : []
            var text = String.UnicodeScalarView()
            var index = 0
            if first {
                first = false
                if units.count >= 2, (bigEndian ? (units[0], units[1]) == (0xFE, 0xFF) : (units[0], units[1]) == (0xFF, 0xFE)) {
                    index = 2
                }
            }
            while index + 1 < units.count {
                let unit = bigEndian ? UInt16(units[index]) << 8 | UInt16(units[index + 1]) : UInt16(units[index + 1]) << 8 | UInt16(units[index])
                index += 2
                if let high = pendingHigh {
                    pendingHigh = nil
                    if (0xDC00...0xDFFF).contains(unit) {
                        let value = 0x10000 + (UInt32(high - 0xD800) << 10) + UInt32(unit - 0xDC00)
                        text.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                        continue
                    }
                    text.append("\u{FFFD}")
                }
                if (0xD800...0xDBFF).contains(unit) {
                    pendingHigh = unit
                } else if (0xDC00...0xDFFF).contains(unit) {
                    text.append("\u{FFFD}")
                } else {
                    text.append(Unicode.Scalar(unit) ?? "\u{FFFD}")
                }
            }
            try out.write(contentsOf: Data(String(text).utf8))
        }
    }

    /// NUL bytes or many control characters in the first bytes mean this is not text.
    static func looksBinary(_ prefix: [UInt8]) -> Bool {
        guard !prefix.isEmpty else { return false }
        var controls = 0
        for byte in prefix {
            if byte == 0 { return true }
            if byte < 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D && byte != 0x0C { controls += 1 }
        }
        return controls * 100 > prefix.count
    }

    /// Picks the delimiter and quote that split the first lines most consistently. Lines are
    /// judged against their most common width, not the first line's, so a polluted header, a
    /// preamble or a second table does not decide the dialect. `"` is preferred: `'` wins only
    /// when it explains the file clearly better (an apostrophe in `won't` is not a quote).
    /// A space is a candidate only when no other delimiter splits the lines consistently.
    static func sniffDialect(_ sample: [UInt8]) -> Dialect {
        func best(_ delimiters: [UInt8]) -> (Dialect, score: Double, consistency: Double)? {
            var found: (Dialect, score: Double, consistency: Double)?
            for quote: UInt8 in [0x22, 0x27] {
                for delimiter in delimiters {
                    let (counts, quoted) = scan(sample, delimiter: delimiter, quote: quote, maxLines: 100)
                    // `'` that never opens a field is no quote at all: `"` then reads the same.
                    if quote == 0x27 && quoted == 0 { continue }
                    guard let (width, consistency) = modalWidth(counts), width > 1 else { continue }
                    // Consistency matters most, then more fields; `'` pays a margin.
                    let score = consistency * 1000 + Double(min(width, 100)) - (quote == 0x27 ? 30 : 0)
                    if score > found?.score ?? -1 { found = (Dialect(delimiter: delimiter, quote: quote), score, consistency) }
                }
            }
            return found
        }
        let usual = best([0x2C, 0x3B, 0x09, 0x7C])
        if let usual, usual.consistency >= 0.9 { return usual.0 }
        if let space = best([0x20]), space.consistency >= 0.9, space.score > (usual?.score ?? 0) + 100 { return space.0 }
        return usual?.0 ?? .csv
    }

    /// The most common field count (the larger on ties) and the share of lines that have it.
    static func modalWidth(_ counts: [Int]) -> (width: Int, consistency: Double)? {
        guard !counts.isEmpty else { return nil }
        var frequency: [Int: Int] = [:]
        for count in counts { frequency[count, default: 0] += 1 }
        let (width, n) = frequency.max { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) }!
        return (width, Double(n) / Double(counts.count))
    }

    /// Fields per line for the first lines, honouring quotes as the reader does: a quote opens
    /// a quoted field only at the field's start (after spaces, unless the delimiter is one).
    static func fieldCounts(_ sample: [UInt8], delimiter: UInt8, quote: UInt8, maxLines: Int) -> [Int] {
        scan(sample, delimiter: delimiter, quote: quote, maxLines: maxLines).counts
    }

    /// Fields per line, and how many fields were quoted.
    static func scan(_ sample: [UInt8], delimiter: UInt8, quote: UInt8, maxLines: Int) -> (counts: [Int], quoted: Int) {
        var quoted = 0
        var counts: [Int] = []
        var fields = 1
        var inQuotes = false
        var atFieldStart = true
        var lineHasContent = false
        var i = 0
        while i < sample.count && counts.count < maxLines {
            let c = sample[i]
            if inQuotes {
                if c == quote {
                    if i + 1 < sample.count, sample[i + 1] == quote { i += 1 } else { inQuotes = false }
                }
            } else if c == quote && atFieldStart {
                quoted += 1
                inQuotes = true
                atFieldStart = false
                lineHasContent = true
            } else if c == delimiter {
                fields += 1
                atFieldStart = true
                lineHasContent = true
            } else if c == 0x0A || c == 0x0D {
                if lineHasContent { counts.append(fields) }
                fields = 1
                atFieldStart = true
                lineHasContent = false
                if c == 0x0D, i + 1 < sample.count, sample[i + 1] == 0x0A { i += 1 }
            } else {
                lineHasContent = true
                if !(c == 0x20 && delimiter != 0x20) { atFieldStart = false }
            }
            i += 1
        }
        // A last line cut off by the sample's end is not counted: it may be partial.
        if lineHasContent && i >= sample.count && counts.isEmpty { counts.append(fields) }
        return (counts, quoted)
    }

    /// A first row is a header unless it looks like the rows after it: in columns whose other
    /// values are all numbers, dates or booleans, a header cell is not.
    static func looksLikeHeader(first: Record, rest: [Record]) -> Bool {
        guard !rest.isEmpty else { return true }
        var headerVotes = 0
        var dataVotes = 0
        for column in 0..<first.fieldCount {
            var profile = ColumnProfile()
            for record in rest where column < record.fieldCount {
                record.withField(column) { raw in
                    let value = CellParsing.trimmed(raw)
                    if !CellParsing.isNullToken(value, extra: []) { profile.observe(value) }
                }
            }
            let decision = profile.decision
            guard decision.type != .string else { continue }
            var cleaned = CellParsing.Cleaning()
            let fits = first.withField(column) { raw -> Bool in
                let value = CellParsing.trimmed(raw)
                if CellParsing.isNullToken(value, extra: []) { return false }
                return StoredValue.convert(value, as: decision, cleaned: &cleaned) != nil
            }
            if fits { dataVotes += 1 } else { headerVotes += 1 }
        }
        if headerVotes == 0 && dataVotes == 0 {
            // Every column is text: a header has distinct, non-empty names.
            let names = (0..<first.fieldCount).map { first.fieldString($0).trimmingCharacters(in: .whitespaces) }
            return !names.contains("") && Set(names).count == names.count
        }
        return headerVotes >= dataVotes
    }
}
