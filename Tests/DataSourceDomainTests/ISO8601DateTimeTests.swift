import DataSourceDomain
import Testing

@Suite struct ISO8601DateTimeTests {
    static let forms: [(String, String)] = [
        ("2024-03-14", "2024-03-14T00:00:00Z"),
        ("2024-03-14T15:30:00Z", "2024-03-14T15:30:00Z"),
        ("2024-03-14t15:30:00Z", "2024-03-14T15:30:00Z"),
        ("2024-03-14 15:30", "2024-03-14T15:30:00Z"),
        ("2024-03-14 15:30:00 +02:00", "2024-03-14T13:30:00Z"),
        ("2024-03-14T15:30:00-0130", "2024-03-14T17:00:00Z"),
        ("2024-03-14T15:30:00+05", "2024-03-14T10:30:00Z"),
        ("2024-03-14T15:30:00,5Z", "2024-03-14T15:30:00.500Z"),
        ("2024-03-14T15:30:00.123Z", "2024-03-14T15:30:00.123Z"),
        ("2024-03-14T15:30:00.123456Z", "2024-03-14T15:30:00.123456Z"),
        ("2024-03-14T15:30:00.1234567Z", "2024-03-14T15:30:00.123457Z"),
        ("2024-03-14T23:59:59.9999999Z", "2024-03-15T00:00:00Z"),
        ("1969-12-31T23:59:59.25Z", "1969-12-31T23:59:59.250Z"),
    ]

    @Test(arguments: forms)
    func readsEveryFormAndWritesCanonically(_ text: String, _ canonical: String) throws {
        let seconds = try #require(ISO8601DateTime.seconds(text))
        #expect(ISO8601DateTime.format(seconds) == canonical)
        // What `data` returns, written back as a literal, is the same instant exactly.
        #expect(ISO8601DateTime.seconds(canonical) == seconds)
        #expect(FilterDates.datetime(canonical) == seconds)
    }

    @Test(arguments: ["2024-02-30", "2024-03-14T25:00", "2024-03-14T15:30:00.Z", "2024-03-14T15:30:00+2", "14/03/2024", ""])
    func rejectsWhatIsNotISO(_ text: String) {
        #expect(ISO8601DateTime.seconds(text) == nil)
    }
}
