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

    @Test func wordsFormLinesAndCellsKeepTheirSpaces() {
        let rows = PDFTableBuilder.rows([Self.page([
            Self.line(100, [(50, "name"), (200, "price")]),
            Self.line(115, [(50, "blue widget large"), (200, "4.50")]),
            Self.line(130, [(50, "gear"), (200, "12")]),
        ])])
        #expect(rows == [["name", "price"], ["blue widget large", "4.50"], ["gear", "12"]])
    }

    @Test func wordsOfALineAtSlightlyDifferentHeightsStayOneLine() {
        var words = Self.line(100, [(50, "a"), (200, "b")])
        words[1].y0 += 2
        words[1].y1 += 2
        let rows = PDFTableBuilder.rows([Self.page([words, Self.line(115, [(50, "c"), (200, "d")])])])
        #expect(rows == [["a", "b"], ["c", "d"]])
    }

    @Test func emptyCellsAreNil() {
        let rows = PDFTableBuilder.rows([Self.page([
            Self.line(100, [(50, "id"), (150, "qty"), (250, "note")]),
            Self.line(115, [(50, "1"), (250, "late")]),
            Self.line(130, [(50, "2"), (150, "7")]),
            Self.line(145, [(250, "only a note")]),
        ])])
        #expect(rows == [["id", "qty", "note"], ["1", nil, "late"], ["2", "7", nil], [nil, nil, "only a note"]])
    }

    @Test func titlesAndFootersOutsideTheTableAreLeftOut() {
        let rows = PDFTableBuilder.rows([Self.page([
            Self.line(40, [(50, "Supplier price list for the second quarter")]),
            Self.line(100, [(50, "id"), (150, "qty")]),
            Self.line(115, [(50, "1"), (150, "3")]),
            Self.line(780, [(50, "Page 1 of 1")]),
        ])])
        #expect(rows == [["id", "qty"], ["1", "3"]])
    }

    @Test func aRepeatedHeaderOnLaterPagesIsJoinedOnce() {
        let header = Self.line(60, [(50, "id"), (150, "qty")])
        let rows = PDFTableBuilder.rows([
            Self.page([header, Self.line(75, [(50, "1"), (150, "3")]), Self.line(780, [(50, "Page 1")])]),
            Self.page([header, Self.line(75, [(50, "2"), (150, "4")]), Self.line(780, [(50, "Page 2")])]),
        ])
        #expect(rows == [["id", "qty"], ["1", "3"], ["2", "4"]])
    }

    @Test func aHeaderAlignedOtherwiseThanItsValuesNamesOneColumn() {
        // Left-aligned headers over right-aligned numbers: the header and the values cover
        // different parts of each column and never share a line.
        let rows = PDFTableBuilder.rows([Self.page([
            Self.line(100, [(50, "item"), (200, "count"), (350, "amount")]),
            Self.line(115, [(50, "a"), (290, "1005"), (440, "3.50")]),
            Self.line(130, [(50, "b"), (290, "2005"), (440, "7.00")]),
        ])])
        #expect(rows == [["item", "count", "amount"], ["a", "1005", "3.50"], ["b", "2005", "7.00"]])
    }

    @Test func proseWithoutColumnsIsOneValuePerLine() {
        let rows = PDFTableBuilder.rows([Self.page([Self.line(100, [(50, "just some prose")]), Self.line(115, [(50, "and more")])])])
        #expect(rows == [["just some prose"], ["and more"]])
    }
}
