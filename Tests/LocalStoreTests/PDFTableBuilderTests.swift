import Testing
@testable import LocalStore

/// The table rebuilt from word positions alone (no PDF needed): lines, phrases, columns, the
/// table's extent on each page and repeated headers.
@Suite struct PDFTableBuilderTests {
    /// Words laid out as a 10-point font would: 5 points per character, 3-point spaces.
    static func line(_ y: Double, _ cells: [(x: Double, text: String)]) -> [PDFWord] {
        var words: [PDFWord] = []
        for cell in cells {
            var x = cell.x
            for word in cell.text.split(separator: " ") {
                let width = Double(word.count) * 5
                words.append(PDFWord(text: String(word), x0: x, y0: y, x1: x + width, y1: y + 10))
                x += width + 3
            }
        }
        return words
    }

    static func page(_ lines: [[PDFWord]]) -> PDFPageText { PDFPageText(words: lines.flatMap { $0 }.shuffled(), height: 800) }

    @Test func wordsFormLinesAndCellsKeepTheirSpaces() throws {
        let rows = try PDFTableBuilder.rows([Self.page([
            Self.line(100, [(50, "name"), (200, "price")]),
            Self.line(115, [(50, "blue widget large"), (200, "4.50")]),
            Self.line(130, [(50, "gear"), (200, "12")]),
        ])])
        #expect(rows == [["name", "price"], ["blue widget large", "4.50"], ["gear", "12"]])
    }

    @Test func wordsOfALineAtSlightlyDifferentHeightsStayOneLine() throws {
        var words = Self.line(100, [(50, "a"), (200, "b")])
        words[1].y0 += 2
        words[1].y1 += 2
        let rows = try PDFTableBuilder.rows([Self.page([words, Self.line(115, [(50, "c"), (200, "d")])])])
        #expect(rows == [["a", "b"], ["c", "d"]])
    }

    @Test func emptyCellsAreNil() throws {
        let rows = try PDFTableBuilder.rows([Self.page([
            Self.line(100, [(50, "id"), (150, "qty"), (250, "note")]),
            Self.line(115, [(50, "1"), (250, "late")]),
            Self.line(130, [(50, "2"), (150, "7")]),
            Self.line(145, [(250, "only a note")]),
        ])])
        #expect(rows == [["id", "qty", "note"], ["1", nil, "late"], ["2", "7", nil], [nil, nil, "only a note"]])
    }

    @Test func titlesAndFootersOutsideTheTableAreLeftOut() throws {
        let rows = try PDFTableBuilder.rows([Self.page([
            Self.line(40, [(50, "Supplier price list for the second quarter")]),
            Self.line(100, [(50, "id"), (150, "qty")]),
            Self.line(115, [(50, "1"), (150, "3")]),
            Self.line(780, [(50, "Page 1 of 1")]),
        ])])
        #expect(rows == [["id", "qty"], ["1", "3"]])
    }

    @Test func aRepeatedHeaderOnLaterPagesIsJoinedOnce() throws {
        let header = Self.line(60, [(50, "id"), (150, "qty")])
        let rows = try PDFTableBuilder.rows([
            Self.page([header, Self.line(75, [(50, "1"), (150, "3")]), Self.line(780, [(50, "Page 1")])]),
            Self.page([header, Self.line(75, [(50, "2"), (150, "4")]), Self.line(780, [(50, "Page 2")])]),
        ])
        #expect(rows == [["id", "qty"], ["1", "3"], ["2", "4"]])
    }

    @Test func aHeaderAlignedOtherwiseThanItsValuesNamesOneColumn() throws {
        // Left-aligned headers over right-aligned numbers: the header and the values cover
        // different parts of each column and never share a line.
        let rows = try PDFTableBuilder.rows([Self.page([
            Self.line(100, [(50, "item"), (200, "count"), (350, "amount")]),
            Self.line(115, [(50, "a"), (290, "1005"), (440, "3.50")]),
            Self.line(130, [(50, "b"), (290, "2005"), (440, "7.00")]),
        ])])
        #expect(rows == [["item", "count", "amount"], ["a", "1005", "3.50"], ["b", "2005", "7.00"]])
    }

    @Test func proseWithoutColumnsIsOneValuePerLine() throws {
        let rows = try PDFTableBuilder.rows([Self.page([Self.line(100, [(50, "just some prose")]), Self.line(115, [(50, "and more")])])])
        #expect(rows == [["just some prose"], ["and more"]])
    }

    @Test func aWordGoesToTheColumnUnderOrNearestItsCentre() {
        let columns = [PDFTableBuilder.Span(x0: 10, x1: 20), .init(x0: 40, x1: 50), .init(x0: 100, x1: 120)]
        func at(_ x: Double) -> Int { PDFTableBuilder.column(of: PDFWord(text: "w", x0: x, y0: 0, x1: x, y1: 1), columns) }
        #expect([at(0), at(15), at(25), at(35), at(45), at(74), at(76), at(110), at(500)] == [0, 0, 0, 1, 1, 1, 2, 2, 2])
    }

    @Test func aLineOfManyWordsIsNotQuadratic() throws {
        // 200,000 words on one line, each its own phrase: far more columns than a table may have.
        let words = (0..<200_000).map { PDFWord(text: "w", x0: Double($0) * 20, y0: 100, x1: Double($0) * 20 + 5, y1: 110) }
        let other = words.map { PDFWord(text: "v", x0: $0.x0, y0: 120, x1: $0.x1, y1: 130) }
        #expect(throws: IngestionFailure.self) { try PDFTableBuilder.rows([PDFPageText(words: words + other, height: 800)]) }
    }

    @Test func theHelperProcessOutputRoundTrips() {
        let pages = [
            PDFPageText(words: [PDFWord(text: "é 中", x0: 1.5, y0: 2, x1: 3.25, y1: 4), PDFWord(text: "x", x0: 0, y0: 0, x1: 1, y1: 1)], height: 842),
            PDFPageText(words: [], height: 595.5),
        ]
        let decoded = PDFReaderProcess.decode(PDFReaderProcess.encode(pages))
        #expect(decoded?.map(\.words) == pages.map(\.words))
        #expect(decoded?.map(\.height) == [842, 595.5])
        // A cut output is refused, not half read.
        #expect(PDFReaderProcess.decode(PDFReaderProcess.encode(pages).dropLast(3)) == nil)
    }
}
