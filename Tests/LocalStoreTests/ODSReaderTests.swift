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

    @Test func mergedRangeCoverTakesTheFirstRangeAddedAndTheRow() {
        func range(_ c0: Int, _ c1: Int, _ r1: Int, _ text: String) -> MergedRange { MergedRange(c0: c0, c1: c1, r1: r1, value: (text, true)) }
        var ranges = [range(2, 4, 5, "a"), range(0, 9, 5, "b"), range(3, 3, 1, "gone")]
        var cover = MergedRangeCover()
        cover.update(ranges, row: 3)
        // Where ranges overlap the first added wins; a range that ended above the row covers nothing.
        #expect((0..<11).map { cover.span(at: $0) } == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1, nil])
        // A range added later in the same row fills only what no earlier range holds.
        ranges.append(range(8, 12, 3, "c"))
        cover.update(ranges, row: 3)
        #expect((8..<14).map { cover.span(at: $0) } == [1, 1, 3, 3, 3, nil])
        // A new row starts again from the ranges that reach it.
        cover.update([range(1, 2, 9, "d")], row: 4)
        #expect((0..<4).map { cover.span(at: $0) } == [nil, 0, 0, nil])
        // Columns past the widest sheet are not held.
        cover.update([range(16_380, Int.max / 2, 9, "e")], row: 5)
        #expect(cover.span(at: 16_383) == 0)
        #expect(cover.span(at: 16_384) == nil)
    }
}
