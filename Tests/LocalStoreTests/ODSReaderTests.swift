import Foundation
import Testing
@testable import LocalStore

@Suite struct ODSReaderTests {
    @Test func dateValues() {
        #expect(ODSReader.isoDate("2024-01-15") == "2024-01-15")
        #expect(ODSReader.isoDate("2024-01-15T00:00:00") == "2024-01-15")
        #expect(ODSReader.isoDate("2024-03-01T13:45:30") == "2024-03-01T13:45:30")
        #expect(ODSReader.isoDate("2024-03-01T13:45:29.6") == "2024-03-01T13:45:30")
        // Rounding past midnight moves to the next day (and year).
        #expect(ODSReader.isoDate("1999-12-31T23:59:59.7") == "2000-01-01")
        #expect(ODSReader.isoDate("2024-03-01T13:45:30Z") == "2024-03-01T13:45:30")
        #expect(ODSReader.isoDate("2023-02-29") == nil)
        #expect(ODSReader.isoDate("2024-13-01") == nil)
        #expect(ODSReader.isoDate("24-01-15") == nil)
        #expect(ODSReader.isoDate("not a date") == nil)
    }

    @Test func timeValues() {
        #expect(ODSReader.clock("PT13H45M30S") == "13:45:30")
        #expect(ODSReader.clock("PT00H00M00.6S") == "00:00:01")
        #expect(ODSReader.clock("PT36H00M00S") == "36:00:00")
        #expect(ODSReader.clock("P1DT2H") == "26:00:00")
        #expect(ODSReader.clock("PT1M") == "00:01:00")
        #expect(ODSReader.clock("P1M") == nil)
        #expect(ODSReader.clock("13:45") == nil)
        #expect(ODSReader.clock("PT99999999999H") == nil)
    }

    @Test func repeatCountsAreBounded() {
        #expect(ODSReader.count(nil, limit: 10) == 1)
        #expect(ODSReader.count("3", limit: 10) == 3)
        #expect(ODSReader.count("0", limit: 10) == 1)
        #expect(ODSReader.count("-5", limit: 10) == 1)
        #expect(ODSReader.count("99999999999999999999999", limit: 10) == 1)
        #expect(ODSReader.count("9223372036854775807", limit: 10) == 10)
    }
}
