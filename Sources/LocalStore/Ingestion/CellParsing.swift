import DataSourceDomain
import Foundation

/// Recognisers for the cleaning rules of SPEC §8, working on a field's UTF-8 bytes so that
/// no String is made for a value that turns out to be a number, a boolean or a date.
enum CellParsing {
    typealias Bytes = UnsafeBufferPointer<UInt8>

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }

    static func trimmed(_ bytes: Bytes) -> Bytes {
        var start = 0
        var end = bytes.count
        while start < end, isSpace(bytes[start]) { start += 1 }
        while end > start, isSpace(bytes[end - 1]) { end -= 1 }
        // Non-breaking spaces (U+00A0) pad spreadsheets' exports too.
        while end - start >= 2, bytes[start] == 0xC2, bytes[start + 1] == 0xA0 { start += 2 }
        while end - start >= 2, bytes[end - 2] == 0xC2, bytes[end - 1] == 0xA0 { end -= 2 }
        return Bytes(rebasing: bytes[start..<end])
    }

    static func equalsASCII(_ bytes: Bytes, _ literal: StaticString, caseInsensitive: Bool = true) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        return literal.withUTF8Buffer { lit in
            for i in 0..<bytes.count {
                var a = bytes[i]
                var b = lit[i]
                if caseInsensitive {
                    if a >= 0x41 && a <= 0x5A { a |= 0x20 }
                    if b >= 0x41 && b <= 0x5A { b |= 0x20 }
                }
                if a != b { return false }
            }
            return true
        }
    }

    /// `''`, `NA`, `N/A`, `null`, `NULL`, `None`, `-` (case-insensitive), plus the upload's own
    /// `nullValues`.
    @inline(__always) static func isNullToken(_ bytes: Bytes, extra: [[UInt8]]) -> Bool {
        let count = bytes.count
        if count == 0 { return true }
        // Every built-in token is short and starts with `-` or `n`/`N`.
        if count <= 4, bytes[0] == 0x2D || bytes[0] | 0x20 == 0x6E, isBuiltInNullToken(bytes) { return true }
        return !extra.isEmpty && isExtraNullToken(bytes, extra: extra)
    }

    private static func isBuiltInNullToken(_ bytes: Bytes) -> Bool {
        switch bytes.count {
        case 1: return bytes[0] == 0x2D
        case 2: return equalsASCII(bytes, "na")
        case 3: return equalsASCII(bytes, "n/a")
        case 4: return equalsASCII(bytes, "null") || equalsASCII(bytes, "none")
        default: return false
        }
    }

    private static func isExtraNullToken(_ bytes: Bytes, extra: [[UInt8]]) -> Bool {
        for token in extra where token.count == bytes.count {
            if token.elementsEqual(bytes) { return true }
        }
        return false
    }

    static func boolean(_ bytes: Bytes) -> Bool? {
        switch bytes.count {
        case 2: if equalsASCII(bytes, "no") { return false }
        case 3: if equalsASCII(bytes, "yes") { return true }
        case 4: if equalsASCII(bytes, "true") { return true }
        case 5: if equalsASCII(bytes, "false") { return false }
        default: break
        }
        return nil
    }

    /// What cleaning did to one value, reported per column (protocol/README.md, "Cleaning report").
    struct Cleaning: OptionSet, Sendable {
        let rawValue: UInt8
        static let currencySymbolRemoved = Cleaning(rawValue: 1)
        static let thousandsSeparatorRemoved = Cleaning(rawValue: 2)
        static let parenthesesNegative = Cleaning(rawValue: 4)
        static let dateReformatted = Cleaning(rawValue: 8)
        static let dateOrderAssumed = Cleaning(rawValue: 16)
        static let booleanNormalized = Cleaning(rawValue: 32)
    }

    /// Which rules `cleanedNumber` applied to a value it read (the slow path only).
    static func numberCleaning(_ bytes: Bytes) -> Cleaning {
        var result: Cleaning = []
        if bytes.first == 0x28 && bytes.last == 0x29 { result.insert(.parenthesesNegative) }
        if bytes.contains(0x2C) { result.insert(.thousandsSeparatorRemoved) }
        if bytes.contains(where: { $0 == 0x24 || $0 >= 0x80 }) { result.insert(.currencySymbolRemoved) }
        return result
    }

    /// `true` / `false` exactly as canonical text writes them.
    static func canonicalBoolean(_ bytes: Bytes) -> Bool? {
        if bytes.count == 4, equalsASCII(bytes, "true", caseInsensitive: false) { return true }
        if bytes.count == 5, equalsASCII(bytes, "false", caseInsensitive: false) { return false }
        return nil
    }

    enum Number: Equatable {
        case int(Int64)
        case double(Double)
    }

    /// A number and whether it had to be cleaned (grouping, currency, accounting parentheses).
    static func number(_ bytes: Bytes) -> (Number, cleaned: Bool)? {
        if let plain = plainNumber(bytes) { return (plain, false) }
        guard bytes.count >= 2 else { return nil }
        return cleanedNumber(bytes).map { ($0, true) }
    }

    /// `-12`, `3.5`, `1e-3`, `.5`; not `01234` (a code, kept as text), not `1.`.
    static func plainNumber(_ bytes: Bytes) -> Number? {
        let n = bytes.count
        guard n > 0, n < 64 else { return nil }
        var i = 0
        var negative = false
        if bytes[0] == 0x2D || bytes[0] == 0x2B { negative = bytes[0] == 0x2D; i = 1 }
        let intStart = i
        var value: Int64 = 0
        var overflow = false
        while i < n, bytes[i] &- 0x30 < 10 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(bytes[i] &- 0x30))
            overflow = overflow || o1 || o2
            value = s
            i += 1
        }
        let intDigits = i - intStart
        if intDigits > 1 && bytes[intStart] == 0x30 { return nil }
        var isInteger = true
        if i < n, bytes[i] == 0x2E {
            isInteger = false
            i += 1
            let fracStart = i
            while i < n, bytes[i] &- 0x30 < 10 { i += 1 }
            guard i > fracStart else { return nil }
        } else if intDigits == 0 {
            return nil
        }
        if i < n, bytes[i] == 0x65 || bytes[i] == 0x45 {
            guard intDigits > 0 || !isInteger else { return nil }
            isInteger = false
            i += 1
            if i < n, bytes[i] == 0x2B || bytes[i] == 0x2D { i += 1 }
            let expStart = i
            while i < n, bytes[i] &- 0x30 < 10 { i += 1 }
            guard i > expStart else { return nil }
        }
        guard i == n else { return nil }
        if isInteger && !overflow { return .int(negative ? -value : value) }
        if let fast = fastDecimal(bytes) { return .double(fast) }
        guard let d = Double(String(decoding: bytes, as: UTF8.self)), d.isFinite else { return nil }
        return .double(d)
    }

    private static let powersOfTen: [Double] = (0...22).map { pow(10, Double($0)) }

    /// Clinger's fast path for `[-]digits.digits` with at most 15 significant digits: the
    /// mantissa and the power of ten are exact doubles, so one division is correctly rounded
    /// and no String is made.
    @inline(__always) static func fastDecimal(_ bytes: Bytes) -> Double? {
        var i = 0
        var negative = false
        if bytes[0] == 0x2D || bytes[0] == 0x2B { negative = bytes[0] == 0x2D; i = 1 }
        var mantissa: Int64 = 0
        var digits = 0
        var fractionDigits = 0
        var seenDot = false
        while i < bytes.count {
            let c = bytes[i]
            if c == 0x2E {
                if seenDot { return nil }
                seenDot = true
            } else if c &- 0x30 < 10 {
                mantissa = mantissa * 10 + Int64(c &- 0x30)
                digits += 1
                if seenDot { fractionDigits += 1 }
                if digits > 15 { return nil }
            } else {
                return nil
            }
            i += 1
        }
        guard fractionDigits <= 22 else { return nil }
        let value = Double(mantissa) / powersOfTen[fractionDigits]
        return negative ? -value : value
    }

    /// `1,234.50`, `$29.99`, `-$5`, `€ 12`, `12 €`, `(12.50)`, `($1,000)`.
    static func cleanedNumber(_ bytes: Bytes) -> Number? {
        var text = Array(bytes)
        var negative = false
        if text.first == 0x28, text.last == 0x29 {
            negative = true
            text = Array(text.dropFirst().dropLast())
        }
        func stripSign() {
            if let first = text.first, first == 0x2D || first == 0x2B {
                if first == 0x2D { negative.toggle() }
                text.removeFirst()
            }
        }
        stripSign()
        var hadCurrency = false
        if let length = currencyPrefixLength(text) {
            text.removeFirst(length)
            hadCurrency = true
            while text.first == 0x20 { text.removeFirst() }
            stripSign()
        } else if let length = currencySuffixLength(text) {
            text.removeLast(length)
            hadCurrency = true
            while text.last == 0x20 { text.removeLast() }
        }
        guard !text.isEmpty else { return nil }
        // Thousands grouping: 1-3 digits, then groups of exactly three, then an optional fraction.
        var digits: [UInt8] = []
        var i = 0
        var groupLength = 0
        var sawComma = false
        while i < text.count, text[i] != 0x2E {
            let c = text[i]
            if c == 0x2C {
                guard groupLength > 0, (sawComma ? groupLength == 3 : groupLength <= 3) else { return nil }
                sawComma = true
                groupLength = 0
            } else if c &- 0x30 < 10 {
                digits.append(c)
                groupLength += 1
            } else {
                return nil
            }
            i += 1
        }
        if sawComma && groupLength != 3 { return nil }
        guard sawComma || hadCurrency || negative else { return nil }
        digits.append(contentsOf: text[i...])
        guard !digits.isEmpty, !(digits.count > 1 && digits[0] == 0x30 && digits[1] != 0x2E) else { return nil }
        guard let value = digits.withUnsafeBufferPointer({ plainNumber($0) }) else { return nil }
        switch value {
        case .int(let v): return .int(negative ? -v : v)
        case .double(let v): return .double(negative ? -v : v)
        }
    }

    private static let currencySymbols: [[UInt8]] = ["$", "€", "£", "¥", "US$"].map { Array($0.utf8) }

    private static func currencyPrefixLength(_ text: [UInt8]) -> Int? {
        for symbol in currencySymbols where text.starts(with: symbol) { return symbol.count }
        return nil
    }

    private static func currencySuffixLength(_ text: [UInt8]) -> Int? {
        for symbol in currencySymbols where text.count > symbol.count && Array(text.suffix(symbol.count)) == symbol {
            return symbol.count
        }
        return nil
    }

    // MARK: Dates

    struct DateForms: OptionSet {
        let rawValue: UInt8
        /// `YYYY-MM-DD`
        static let iso = DateForms(rawValue: 1)
        /// `YYYY/MM/DD`
        static let yearFirstSlash = DateForms(rawValue: 2)
        /// `MM/DD/YYYY` (also with `-`)
        static let monthDayYear = DateForms(rawValue: 4)
        /// `DD/MM/YYYY` (also with `-`)
        static let dayMonthYear = DateForms(rawValue: 8)
        /// `DD.MM.YYYY`
        static let dotted = DateForms(rawValue: 16)
        /// `Mar 14, 2024`, `14 March 2024`
        static let monthName = DateForms(rawValue: 32)
    }

    @inline(__always) static func digits(_ b: Bytes, _ start: Int, _ count: Int) -> Int? {
        ISO8601DateTime.digits(b, start, count)
    }

    static func validDate(_ y: Int, _ m: Int, _ d: Int) -> Bool {
        (1...12).contains(m) && d >= 1 && d <= CivilDate.daysInMonth(year: y, month: m) && y >= 1 && y <= 9999
    }

    /// `YYYY-MM-DD` at the start of `b`; returns (y, m, d).
    static func isoDatePrefix(_ b: Bytes) -> (Int, Int, Int)? {
        guard b.count >= 10, b[4] == 0x2D, b[7] == 0x2D,
            let y = digits(b, 0, 4), let m = digits(b, 5, 2), let d = digits(b, 8, 2), validDate(y, m, d)
        else { return nil }
        return (y, m, d)
    }

    /// Every date form this value can be read in, with its reading in each.
    static func dateForms(_ b: Bytes) -> DateForms {
        var forms: DateForms = []
        if b.count == 10, isoDatePrefix(b) != nil { return .iso }
        if b.count == 10, b[4] == 0x2F, b[7] == 0x2F, let y = digits(b, 0, 4), let m = digits(b, 5, 2), let d = digits(b, 8, 2),
            validDate(y, m, d)
        {
            return .yearFirstSlash
        }
        if let (a, c, y, sep) = threePart(b) {
            if sep == 0x2E {
                if validDate(y, c, a) { forms.insert(.dotted) }
            } else {
                if validDate(y, a, c) { forms.insert(.monthDayYear) }
                if validDate(y, c, a) { forms.insert(.dayMonthYear) }
            }
            return forms
        }
        if monthNameDate(b) != nil { forms.insert(.monthName) }
        return forms
    }

    /// `A/B/YYYY`, `A-B-YYYY` or `A.B.YYYY` with one- or two-digit A and B.
    static func threePart(_ b: Bytes) -> (Int, Int, Int, UInt8)? {
        guard b.count >= 8, b.count <= 10 else { return nil }
        var i = 0
        func number(max: Int) -> Int? {
            let start = i
            var v = 0
            while i < b.count, b[i] &- 0x30 < 10, i - start < max { v = v * 10 + Int(b[i] - 0x30); i += 1 }
            return i > start ? v : nil
        }
        guard let a = number(max: 2), i < b.count else { return nil }
        let sep = b[i]
        guard sep == 0x2F || sep == 0x2D || sep == 0x2E else { return nil }
        i += 1
        guard let c = number(max: 2), i < b.count, b[i] == sep else { return nil }
        i += 1
        let yearStart = i
        guard let y = number(max: 4), i - yearStart == 4, i == b.count else { return nil }
        return (a, c, y, sep)
    }

    private static let monthNames: [[UInt8]] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ].map { Array($0.utf8) }
    private static let fullMonthNames: [[UInt8]] = [
        "january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december",
    ].map { Array($0.utf8) }

    static func month(_ word: [UInt8]) -> Int? {
        let lower = word.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        if let i = monthNames.firstIndex(of: lower) { return i + 1 }
        if let i = fullMonthNames.firstIndex(of: lower) { return i + 1 }
        if lower == Array("sept".utf8) { return 9 }
        return nil
    }

    /// `Mar 14, 2024`, `March 14 2024`, `14 Mar 2024`, `14-Mar-2024`.
    static func monthNameDate(_ b: Bytes) -> (Int, Int, Int)? {
        guard b.count >= 8, b.count <= 20 else { return nil }
        let words = b.split(whereSeparator: { $0 == 0x20 || $0 == 0x2C || $0 == 0x2D }).map(Array.init)
        guard words.count == 3 else { return nil }
        func int(_ w: [UInt8]) -> Int? {
            guard !w.isEmpty, w.count <= 4, w.allSatisfy({ $0 &- 0x30 < 10 }) else { return nil }
            return w.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }
        if let m = month(words[0]), let d = int(words[1]), words[1].count <= 2, let y = int(words[2]), words[2].count == 4, validDate(y, m, d) {
            return (y, m, d)
        }
        if let d = int(words[0]), words[0].count <= 2, let m = month(words[1]), let y = int(words[2]), words[2].count == 4, validDate(y, m, d) {
            return (y, m, d)
        }
        return nil
    }

    /// Reads a date in the one form its column settled on; `YYYY-MM-DD` out.
    static func date(_ b: Bytes, form: DateForms) -> String? {
        var ymd: (Int, Int, Int)?
        switch form {
        case .iso: if b.count == 10 { ymd = isoDatePrefix(b) }
        case .yearFirstSlash:
            if b.count == 10, b[4] == 0x2F, b[7] == 0x2F, let y = digits(b, 0, 4), let m = digits(b, 5, 2), let d = digits(b, 8, 2),
                validDate(y, m, d)
            { ymd = (y, m, d) }
        case .monthDayYear, .dayMonthYear, .dotted:
            if let (a, c, y, sep) = threePart(b) {
                if form == .dotted, sep == 0x2E, validDate(y, c, a) { ymd = (y, c, a) }
                if form == .monthDayYear, sep != 0x2E, validDate(y, a, c) { ymd = (y, a, c) }
                if form == .dayMonthYear, sep != 0x2E, validDate(y, c, a) { ymd = (y, c, a) }
            }
        case .monthName: ymd = monthNameDate(b)
        default: break
        }
        guard let (y, m, d) = ymd else { return nil }
        return formatDate(y, m, d)
    }

    static func formatDate(_ y: Int, _ m: Int, _ d: Int) -> String {
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }

    /// ISO 8601 date-times (and bare ISO dates, as midnight), as seconds since 1970: the
    /// shared reader, so that filters accept whatever ingestion stored.
    @inline(__always) static func datetime(_ b: Bytes) -> Double? { ISO8601DateTime.seconds(b) }

    static func formatDatetime(_ seconds: Double) -> String { ISO8601DateTime.format(seconds) }
}
