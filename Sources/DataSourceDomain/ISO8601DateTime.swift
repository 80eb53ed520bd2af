/// The one reader and writer of ISO 8601 dates and date-times, shared by ingestion (what a
/// file's cells become) and the filter language (what a literal compares with), so that any
/// value ingestion accepts is writable as a literal, and a value exactly as `data` returns it,
/// written back as a literal, matches its row.
///
/// Date-times are seconds since 1970 (UTC) as a Double, kept to whole microseconds: a
/// fraction is rounded to 6 digits when read, so what is written (3 or 6 digits) reads back
/// to the same Double.
public enum ISO8601DateTime {
    /// `YYYY-MM-DD` → days since 1970, for a real calendar date.
    public static func days(ofDate b: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard b.count >= 10, b[4] == 0x2D, b[7] == 0x2D,
            let y = digits(b, 0, 4), let m = digits(b, 5, 2), let d = digits(b, 8, 2)
        else { return nil }
        return CivilDate.days(year: y, month: m, day: d)
    }

    /// A date `YYYY-MM-DD` (midnight UTC) or a date-time
    /// `YYYY-MM-DD[T t space]HH:MM[:SS[(.|,)fraction]][ ][Z z | ±HH[[:]MM]]` (naive = UTC).
    public static func seconds(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
        guard let days = days(ofDate: b) else { return nil }
        var whole = days * 86400
        if b.count == 10 { return Double(whole) }
        guard b.count >= 16, b[10] == 0x54 || b[10] == 0x20 || b[10] == 0x74, b[13] == 0x3A,
            let hh = digits(b, 11, 2), let mm = digits(b, 14, 2), hh < 24, mm < 60
        else { return nil }
        whole += Int64(hh * 3600 + mm * 60)
        var micros: Int64 = 0
        var i = 16
        if i < b.count, b[i] == 0x3A {
            guard let ss = digits(b, i + 1, 2), ss < 61 else { return nil }
            whole += Int64(ss)
            i += 3
            if i < b.count, b[i] == 0x2E || b[i] == 0x2C {
                i += 1
                let start = i
                var scale: Int64 = 100_000
                var roundUp = false
                while i < b.count, b[i] &- 0x30 < 10 {
                    let digit = Int64(b[i] - 0x30)
                    if scale > 0 {
                        micros += digit * scale
                        scale /= 10
                    } else if i - start == 6 {
                        roundUp = digit >= 5
                    }
                    i += 1
                }
                guard i > start else { return nil }
                if roundUp { micros += 1 }
            }
        }
        if i < b.count, b[i] == 0x20 { i += 1 }
        if i < b.count {
            if (b[i] == 0x5A || b[i] == 0x7A) && i + 1 == b.count { return compose(whole, micros) }
            guard b[i] == 0x2B || b[i] == 0x2D, let oh = digits(b, i + 1, 2) else { return nil }
            let sign: Int64 = b[i] == 0x2D ? -1 : 1
            var j = i + 3
            var om = 0
            if j < b.count, b[j] == 0x3A { j += 1 }
            if j < b.count {
                guard let minutes = digits(b, j, 2) else { return nil }
                om = minutes
                j += 2
            }
            guard j == b.count, oh < 24, om < 60 else { return nil }
            whole -= sign * Int64(oh * 3600 + om * 60)
        }
        return compose(whole, micros)
    }

    public static func seconds(_ text: String) -> Double? {
        var text = text
        return text.withUTF8 { seconds($0) }
    }

    /// `YYYY-MM-DD` validated, or nil.
    public static func date(_ text: String) -> String? {
        var text = text
        return text.withUTF8 { b in b.count == 10 && days(ofDate: b) != nil ? String(decoding: b, as: UTF8.self) : nil }
    }

    /// `2024-03-14T15:30:00Z`, with `.fff` when the value has milliseconds and `.ffffff` when
    /// it has microseconds.
    public static func format(_ seconds: Double) -> String {
        var whole = Int64(seconds.rounded(.down))
        var micros = Int64(((seconds - Double(whole)) * 1_000_000).rounded())
        if micros == 1_000_000 {
            whole += 1
            micros = 0
        }
        var text = Timestamp(secondsSince1970: whole).iso8601
        guard micros > 0 else { return text }
        text.removeLast()
        let fraction = micros % 1000 == 0 ? pad(micros / 1000, 3) : pad(micros, 6)
        return text + "." + fraction + "Z"
    }

    private static func compose(_ whole: Int64, _ micros: Int64) -> Double {
        Double(whole) + Double(micros) / 1_000_000
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// The decimal number in `count` ASCII digits at `start`, or nil.
    @inline(__always) public static func digits(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int? {
        guard start + count <= b.count else { return nil }
        var value = 0
        for i in start..<(start + count) {
            let digit = b[i] &- 0x30
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}
