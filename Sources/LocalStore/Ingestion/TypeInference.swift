import DataSourceDomain

/// What one column's values could all be, narrowed value by value.
struct ColumnProfile: Sendable {
    /// With `options.clean: false`, only canonical text (`12.5`, `true`, `2024-03-14`) has a type.
    var canonical = false
    var nonNull = 0
    var allBoolean = true
    var allNumber = true
    /// Date forms every value so far can be read in, except that ISO, year-first, dotted
    /// and month-name values may mix (each is unambiguous on its own).
    var allDate = true
    var sawSlashDate = false
    var monthDayYearPossible = true
    var dayMonthYearPossible = true
    var allDateOrDatetime = true
    var sawDatetime = false

    mutating func observe(_ value: CellParsing.Bytes, textOnly: Bool = false) {
        nonNull += 1
        if textOnly {
            allBoolean = false
            allNumber = false
        }
        if canonical {
            if allBoolean, CellParsing.canonicalBoolean(value) == nil { allBoolean = false }
            if allNumber, CellParsing.plainNumber(value) == nil { allNumber = false }
            if allDate, !(value.count == 10 && CellParsing.isoDatePrefix(value) != nil) { allDate = false }
        }
        if allBoolean, CellParsing.boolean(value) == nil { allBoolean = false }
        if allNumber, CellParsing.number(value) == nil { allNumber = false }
        if allDate {
            let forms = CellParsing.dateForms(value)
            if forms.isEmpty {
                allDate = false
            } else if forms.contains(.monthDayYear) || forms.contains(.dayMonthYear) {
                sawSlashDate = true
                if !forms.contains(.monthDayYear) { monthDayYearPossible = false }
                if !forms.contains(.dayMonthYear) { dayMonthYearPossible = false }
                if !monthDayYearPossible && !dayMonthYearPossible { allDate = false }
            }
        }
        if allDateOrDatetime {
            if value.count > 10, CellParsing.datetime(value) != nil {
                sawDatetime = true
            } else if !(value.count == 10 && CellParsing.isoDatePrefix(value) != nil) {
                allDateOrDatetime = false
            }
        }
    }

    /// The narrowest type that holds every value seen.
    var decision: ColumnDecision {
        var decision = undecorated
        decision.canonical = canonical
        return decision
    }

    private var undecorated: ColumnDecision {
        guard nonNull > 0 else { return ColumnDecision(type: .string) }
        if allBoolean { return ColumnDecision(type: .boolean) }
        if allNumber { return ColumnDecision(type: .number) }
        if allDate && !sawDatetime {
            if sawSlashDate {
                // Both orders fit every value: the column is ambiguous, so it stays text.
                if monthDayYearPossible && dayMonthYearPossible { return ColumnDecision(type: .string) }
                return ColumnDecision(type: .date, slashOrder: monthDayYearPossible ? .monthDayYear : .dayMonthYear)
            }
            return ColumnDecision(type: .date)
        }
        if allDateOrDatetime && sawDatetime { return ColumnDecision(type: .datetime) }
        return ColumnDecision(type: .string)
    }
}

/// A column's type, and for dates written with slashes, which order they use.
struct ColumnDecision: Sendable, Equatable {
    var type: ColumnType
    var slashOrder: CellParsing.DateForms = []
    /// Only canonical text converts (`options.clean: false`).
    var canonical = false
}

/// A value converted for storage, or why it does not fit its column's type.
enum StoredValue {
    case null
    case int(Int64)
    case double(Double)
    case text(UnsafeBufferPointer<UInt8>)
    case ownedText(String)

    /// `cleaned` tells which cleaning rules the conversion applied (empty when none did).
    static func convert(_ value: CellParsing.Bytes, as decision: ColumnDecision, cleaned: inout CellParsing.Cleaning) -> StoredValue? {
        switch decision.type {
        case .string:
            return .text(value)
        case .boolean:
            if decision.canonical { return CellParsing.canonicalBoolean(value).map { .int($0 ? 1 : 0) } }
            guard let truth = CellParsing.boolean(value) else { return nil }
            if CellParsing.canonicalBoolean(value) == nil { cleaned.insert(.booleanNormalized) }
            return .int(truth ? 1 : 0)
        case .number:
            let number: CellParsing.Number
            if decision.canonical {
                guard let plain = CellParsing.plainNumber(value) else { return nil }
                number = plain
            } else {
                guard let (parsed, wasCleaned) = CellParsing.number(value) else { return nil }
                if wasCleaned { cleaned.formUnion(CellParsing.numberCleaning(value)) }
                number = parsed
            }
            switch number {
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            }
        case .date:
            // A valid ISO date is already in the stored form.
            if value.count == 10, CellParsing.isoDatePrefix(value) != nil { return .text(value) }
            if decision.canonical { return nil }
            for form in [CellParsing.DateForms.yearFirstSlash, .dotted, .monthName] {
                if let text = CellParsing.date(value, form: form) {
                    cleaned.insert(.dateReformatted)
                    return .ownedText(text)
                }
            }
            if !decision.slashOrder.isEmpty, let text = CellParsing.date(value, form: decision.slashOrder) {
                cleaned.insert(.dateOrderAssumed)
                return .ownedText(text)
            }
            return nil
        case .datetime:
            return CellParsing.datetime(value).map { .double($0) }
        }
    }
}
