import Foundation

/// A data source id: a lowercase UUID.
public struct DataSourceID: Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String

    /// Accepts any UUID spelling and keeps the canonical lowercase form.
    public init?(_ text: String) {
        guard let uuid = UUID(uuidString: text) else { return nil }
        rawValue = uuid.uuidString.lowercased()
    }

    public static func random() -> DataSourceID {
        DataSourceID(UUID().uuidString)!
    }

    public var description: String { rawValue }
}

/// A point in time with whole-second precision, printed as ISO 8601 UTC with a `Z`.
public struct Timestamp: Sendable, Hashable, Comparable, Codable {
    public let secondsSince1970: Int64

    public init(secondsSince1970: Int64) { self.secondsSince1970 = secondsSince1970 }

    public static func now() -> Timestamp {
        Timestamp(secondsSince1970: Int64(Date().timeIntervalSince1970.rounded(.down)))
    }

    public func adding(seconds: Int64) -> Timestamp { Timestamp(secondsSince1970: secondsSince1970 + seconds) }

    /// When processing that started at `startedAt` and has read `bytesDone` of `totalBytes`
    /// should end: now plus the remaining bytes at the rate measured so far (nil before the
    /// first bytes). Every store estimates `estimatedCompletion` this way.
    public static func estimatedCompletion(startedAt: Date, bytesDone: Int64, totalBytes: Int64) -> Timestamp? {
        let elapsed = Date().timeIntervalSince(startedAt)
        guard bytesDone > 0, elapsed > 0 else { return nil }
        let remaining = Double(max(0, totalBytes - bytesDone)) / (Double(bytesDone) / elapsed)
        return Timestamp(secondsSince1970: Int64((Date().timeIntervalSince1970 + remaining).rounded(.up)))
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.secondsSince1970 < rhs.secondsSince1970 }

    public var iso8601: String {
        let days = secondsSince1970 >= 0 ? secondsSince1970 / 86400 : (secondsSince1970 - 86399) / 86400
        let secondOfDay = secondsSince1970 - days * 86400
        let (year, month, day) = CivilDate.fromDays(days)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", year, month, day,
            Int(secondOfDay / 3600), Int(secondOfDay % 3600 / 60), Int(secondOfDay % 60))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS` with `Z` or a numeric offset, ignoring fractions.
    public init?(iso8601 text: String) {
        let parts = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= parts.count else { return nil }
            var value = 0
            for i in range {
                guard (0x30...0x39).contains(parts[i]) else { return nil }
                value = value * 10 + Int(parts[i] - 0x30)
            }
            return value
        }
        guard parts.count >= 19, parts[4] == 0x2D, parts[7] == 0x2D, parts[10] == 0x54 || parts[10] == 0x20,
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var index = 19
        if index < parts.count, parts[index] == 0x2E {
            index += 1
            while index < parts.count, (0x30...0x39).contains(parts[index]) { index += 1 }
        }
        var offset = 0
        if index < parts.count {
            switch parts[index] {
            case 0x5A, 0x7A: index += 1
            case 0x2B, 0x2D:
                let sign = parts[index] == 0x2D ? -1 : 1
                guard let h = number((index + 1)..<(index + 3)) else { return nil }
                var m = 0
                if index + 3 < parts.count, parts[index + 3] == 0x3A {
                    guard let mm = number((index + 4)..<(index + 6)) else { return nil }
                    m = mm
                    index += 6
                } else if let mm = number((index + 3)..<(index + 5)) {
                    m = mm
                    index += 5
                } else {
                    index += 3
                }
                offset = sign * (h * 3600 + m * 60)
            default: return nil
            }
        }
        guard index == parts.count, let days = CivilDate.days(year: year, month: month, day: day),
            hour < 24, minute < 60, second < 61
        else { return nil }
        self.secondsSince1970 = Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset)
    }
}

/// Proleptic Gregorian calendar arithmetic (Howard Hinnant's days-from-civil), so that date
/// handling never depends on the process's locale or time zone.
public enum CivilDate {
    public static func days(year: Int, month: Int, day: Int) -> Int64? {
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month) else { return nil }
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public static func fromDays(_ z: Int64) -> (Int, Int, Int) {
        let z = z + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(m <= 2 ? y + 1 : y), Int(m), Int(d))
    }

    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
