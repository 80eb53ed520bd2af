import Testing
@testable import LocalStore

@Suite struct CellParsingTests {
    func parse(_ text: String) -> (CellParsing.Number, Bool)? {
        Array(text.utf8).withUnsafeBufferPointer { CellParsing.number($0).map { ($0.0, $0.cleaned) } }
    }

    @Test func fastDecimalAgreesWithTheStandardLibrary() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let integer = Int.random(in: 0...9_999_999, using: &generator)
            let fraction = Int.random(in: 0...99_999, using: &generator)
            let text = "\(Bool.random() ? "-" : "")\(integer).\(fraction)"
            let expected = Double(text)!
            #expect(parse(text)?.0 == .double(expected), "\(text)")
        }
    }

    @Test(arguments: [
        ("42", CellParsing.Number.int(42), false), ("-7", .int(-7), false), ("0", .int(0), false), ("3.25", .double(3.25), false),
        ("1e3", .double(1000), false), (".5", .double(0.5), false), ("1,234.50", .double(1234.5), true), ("$29.99", .double(29.99), true),
        ("€ 12", .int(12), true), ("12 €", .int(12), true), ("(12.50)", .double(-12.5), true), ("-$5", .int(-5), true),
        ("£1,000", .int(1000), true), ("99999999999999999999", .double(1e20), false),
    ])
    func numbers(_ text: String, _ value: CellParsing.Number, _ cleaned: Bool) {
        let parsed = parse(text)
        #expect(parsed?.0 == value)
        #expect(parsed?.1 == cleaned)
    }

    @Test(arguments: ["01234", "00", "1.", "1,23", "12,34.5", "1.2.3", "abc", "", "$", "()", "1e", "--1", "1,2345"])
    func notNumbers(_ text: String) {
        #expect(parse(text) == nil, "\(text)")
    }

    @Test func dateForms() {
        func forms(_ text: String) -> CellParsing.DateForms { Array(text.utf8).withUnsafeBufferPointer { CellParsing.dateForms($0) } }
        #expect(forms("2024-03-14") == .iso)
        #expect(forms("2024-02-30").isEmpty)
        #expect(forms("03/14/2024") == .monthDayYear)
        #expect(forms("14/03/2024") == .dayMonthYear)
        #expect(forms("03/04/2024") == [.monthDayYear, .dayMonthYear])
        #expect(forms("14.03.2024") == .dotted)
        #expect(forms("Mar 14, 2024") == .monthName)
        #expect(forms("14 March 2024") == .monthName)
        #expect(forms("hello") == [])
    }

    @Test func datetimes() {
        func seconds(_ text: String) -> Double? { Array(text.utf8).withUnsafeBufferPointer { CellParsing.datetime($0) } }
        #expect(seconds("2024-03-14T15:30:00Z") == 1_710_430_200)
        #expect(seconds("2024-03-14 15:30") == 1_710_430_200)
        #expect(seconds("2024-03-14T17:30:00+02:00") == 1_710_430_200)
        #expect(seconds("2024-03-14T17:30:00+0200") == 1_710_430_200)
        #expect(seconds("2024-03-14T15:30:00.5Z") == 1_710_430_200.5)
        #expect(seconds("2024-03-14T25:00:00Z") == nil)
        #expect(CellParsing.formatDatetime(1_710_430_200.25) == "2024-03-14T15:30:00.250Z")
    }
}
