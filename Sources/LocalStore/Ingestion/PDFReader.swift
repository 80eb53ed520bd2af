import Foundation
import PDFText

/// A word on a PDF page and its box in points (origin at the page's top-left, y downwards).
struct PDFWord: Equatable {
    var text: String
    var x0: Double
    var y0: Double
    var x1: Double
    var y1: Double

    var height: Double { y1 - y0 }
    var centerX: Double { (x0 + x1) / 2 }
    var centerY: Double { (y0 + y1) / 2 }
}

/// The words of one page.
struct PDFPageText {
    var words: [PDFWord]
    var height: Double
}

/// Reads the words of every page through poppler (the `PDFText` target). The file is checked
/// first for what poppler would quietly repair: a file that is not a PDF, or one cut short.
enum PDFTextExtraction {
    /// Past this many words the PDF is refused, so a huge document cannot exhaust memory
    /// (every word is kept until the table is built).
    static let maxWords = 2_000_000

    /// `pageRead` is told after each page (done, of how many), so that a long document keeps
    /// its progress and heartbeat going.
    static func readPages(of url: URL, isCancelled: () -> Bool, pageRead: (_ done: Int, _ count: Int) -> Void) throws -> [PDFPageText] {
        try checkEnvelope(url)
        var opened: OpaquePointer?
        switch pdftext_open(url.path, &opened) {
        case PDFTextOpened: break
        case PDFTextLocked: throw IngestionFailure("the PDF is encrypted and needs a password; upload a copy without one")
        case PDFTextUnreadable: throw IngestionFailure("the PDF is damaged and cannot be read")
        default: throw IngestionFailure("the PDF could not be read")
        }
        guard let document = opened else { throw IngestionFailure("the PDF could not be read") }
        defer { pdftext_close(document) }
        let count = Int(pdftext_page_count(document))
        guard count > 0 else { throw IngestionFailure("the PDF has no pages") }
        var pages: [PDFPageText] = []
        var total = 0
        for index in 0..<count {
            if isCancelled() { throw IngestionPipeline.Cancelled() }
            var words: UnsafePointer<PDFTextWord>?
            var text: UnsafePointer<CChar>?
            var width = 0.0
            var height = 0.0
            let found = pdftext_page_words(document, Int32(index), &words, &text, &width, &height)
            guard found >= 0 else { throw IngestionFailure("page \(index + 1) of the PDF is damaged and cannot be read") }
            total += found
            guard total <= maxWords else { throw IngestionFailure("the PDF holds more than \(maxWords) words, over the limit") }
            var page = PDFPageText(words: [], height: height)
            page.words.reserveCapacity(found)
            if found > 0, let words, let text {
                text.withMemoryRebound(to: UInt8.self, capacity: 1) { bytes in
                    for w in UnsafeBufferPointer(start: words, count: found) {
                        let word = String(decoding: UnsafeBufferPointer(start: bytes + w.textStart, count: w.textLength), as: UTF8.self)
                        // A box that is not finite (a degenerate font matrix) has no place in the table.
                        guard !word.allSatisfy(\.isWhitespace), [w.x0, w.y0, w.x1, w.y1].allSatisfy(\.isFinite) else { continue }
                        page.words.append(PDFWord(text: word, x0: w.x0, y0: w.y0, x1: w.x1, y1: w.y1))
                    }
                }
            }
            pages.append(page)
            pageRead(index + 1, count)
        }
        guard pages.contains(where: { !$0.words.isEmpty }) else {
            throw IngestionFailure("the PDF holds no extractable text (scanned pages or images only?); text recognition (OCR) is not supported")
        }
        return pages
    }

    /// A PDF starts with `%PDF-` (within its first 1 KiB) and ends with `%%EOF` (within its last
    /// 1 KiB, as readers allow). poppler reconstructs a file without its end, which would load
    /// part of a table as if it were whole; such a file is refused instead.
    static func checkEnvelope(_ url: URL) throws {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        let head = try handle.read(upToCount: 1024) ?? Data()
        guard head.range(of: Data("%PDF-".utf8)) != nil else {
            throw IngestionFailure("the file is not a PDF (no %PDF- header)")
        }
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size > 1024 ? size - 1024 : 0)
        let tail = try handle.readToEnd() ?? Data()
        guard tail.range(of: Data("%%EOF".utf8)) != nil else {
            throw IngestionFailure("the PDF is truncated (it does not end with %%EOF); upload the whole file")
        }
    }
}

/// Rebuilds a table from the words of a PDF, stream-style (from the positions of the text,
/// not from ruling lines):
/// - words whose vertical centres agree form a line, read left to right;
/// - within a line, words closer than half the line's text height form one phrase (a cell's
///   text, spaces kept);
/// - columns are the x ranges covered by the phrases of lines with two phrases or more, on all
///   pages together, separated by gaps that (nearly) every such line leaves empty; two
///   neighbouring columns never filled on the same line are one column whose header and values
///   are aligned differently;
/// - on each page the table runs from the first to the last line whose phrases each reach into
///   one column (and no two the same), and on through lines below that fit the columns at the
///   table's line spacing (rows with one value); lines above and below it (titles, page
///   headers and footers) are left out, and every line inside it is a row, its words placed
///   in the column under their centre;
/// - a later page's first row equal to the table's first row is a repeated header, dropped.
enum PDFTableBuilder {
    /// A range of x positions on the page.
    struct Span: Equatable {
        var x0: Double
        var x1: Double
    }

    struct Line {
        var centerY: Double
        var height: Double
        /// Left to right.
        var words: [PDFWord]
        /// Ranges of `words`, each one phrase.
        var phrases: [Range<Int>]

        /// Words are sorted by their left edges; a right edge may still reach past the next
        /// word's (overlapping text), hence the loop.
        func extent(_ phrase: Range<Int>) -> Span {
            var span = Span(x0: words[phrase.lowerBound].x0, x1: words[phrase.lowerBound].x1)
            for k in phrase { span.x1 = max(span.x1, words[k].x1) }
            return span
        }
    }

    static func rows(_ pages: [PDFPageText]) throws -> [[String?]] {
        let linesByPage = pages.map { Self.lines($0.words) }
        let lines = linesByPage.flatMap { $0 }
        let multi = lines.filter { $0.phrases.count >= 2 }
        // No line with two phrases: no columns to find; each line is one value.
        guard !multi.isEmpty else { return lines.map { [text(of: $0.words[...])] } }
        var columns = columnRanges(multi)
        columns = mergedNeverShared(columns, lines: multi)
        // Checked here as well as by the pipeline: placing words costs time per column.
        guard columns.count <= TableWriter.maxColumns else {
            throw IngestionFailure("too many columns: \(columns.count) (at most \(TableWriter.maxColumns))")
        }

        var rows: [[String?]] = []
        for onPage in linesByPage {
            let fitting = onPage.indices.filter { onPage[$0].phrases.count >= 2 && fits(onPage[$0], columns) }
            guard let first = fitting.first, var last = fitting.last else { continue }
            // Rows with one value below the last full one belong to the table while they keep
            // its line spacing; a footer is further away or does not fit the columns.
            let pitches = zip(onPage[first...last].dropFirst(), onPage[first...last]).map { $0.centerY - $1.centerY }.sorted()
            if !pitches.isEmpty {
                let pitch = pitches[pitches.count / 2]
                while last + 1 < onPage.count, onPage[last + 1].centerY - onPage[last].centerY <= 1.5 * pitch, fits(onPage[last + 1], columns) {
                    last += 1
                }
            }
            for (position, line) in onPage[first...last].enumerated() {
                let row = cells(line, columns)
                if position == 0, !rows.isEmpty, row == rows[0] { continue }
                rows.append(row)
            }
        }
        return rows
    }

    /// Groups words into lines by their vertical centres, then each line into phrases.
    static func lines(_ words: [PDFWord]) -> [Line] {
        let sorted = words.sorted { $0.centerY != $1.centerY ? $0.centerY < $1.centerY : $0.x0 < $1.x0 }
        var lines: [Line] = []
        for word in sorted {
            if let last = lines.indices.last, abs(word.centerY - lines[last].centerY) <= 0.5 * max(lines[last].height, word.height) {
                // In place: a copy of the line per word would make a long line quadratic.
                let n = Double(lines[last].words.count)
                lines[last].centerY = (lines[last].centerY * n + word.centerY) / (n + 1)
                lines[last].height = max(lines[last].height, word.height)
                lines[last].words.append(word)
            } else {
                lines.append(Line(centerY: word.centerY, height: word.height, words: [word], phrases: []))
            }
        }
        for i in lines.indices {
            lines[i].words.sort { $0.x0 < $1.x0 }
            let heights = lines[i].words.map(\.height).sorted()
            let gapLimit = max(1, 0.5 * heights[heights.count / 2])
            var start = 0
            for k in 1..<max(1, lines[i].words.count) where lines[i].words[k].x0 - lines[i].words[k - 1].x1 > gapLimit {
                lines[i].phrases.append(start..<k)
                start = k
            }
            lines[i].phrases.append(start..<lines[i].words.count)
        }
        return lines
    }

    /// The x ranges covered by more than a few of the lines' phrases: a column's gap may be
    /// crossed by one line in twenty (a note or a footer spanning columns).
    static func columnRanges(_ lines: [Line]) -> [Span] {
        let tolerance = lines.count / 20
        struct Edge {
            var x: Double
            var delta: Int
        }
        var events: [Edge] = []
        events.reserveCapacity(lines.count * 8)
        for line in lines {
            for phrase in line.phrases {
                let e = line.extent(phrase)
                events.append(Edge(x: e.x0, delta: 1))
                events.append(Edge(x: e.x1, delta: -1))
            }
        }
        // At equal x, ends before starts: touching phrases leave a (zero-width) gap.
        events.sort { $0.x != $1.x ? $0.x < $1.x : $0.delta < $1.delta }
        var ranges: [Span] = []
        var depth = 0
        var open: Double?
        for event in events {
            depth += event.delta
            if depth > tolerance, open == nil {
                open = event.x
            } else if depth <= tolerance, let start = open {
                if event.x > start { ranges.append(Span(x0: start, x1: event.x)) }
                open = nil
            }
        }
        return ranges
    }

    /// Joins neighbouring columns that no line fills both of (a left-aligned header over
    /// right-aligned values covers one part of the column, the values another), left to right:
    /// a column joins the one before it, with all that one has joined already, when no line
    /// has words in both.
    static func mergedNeverShared(_ columns: [Span], lines: [Line]) -> [Span] {
        guard columns.count > 1 else { return columns }
        let used = lines.map { line in Set(line.words.map { column(of: $0, columns) }) }
        var merged = [columns[0]]
        var group: Set<Int> = [0]
        for k in 1..<columns.count {
            if used.contains(where: { $0.contains(k) && !$0.isDisjoint(with: group) }) {
                merged.append(columns[k])
                group = [k]
            } else {
                merged[merged.count - 1].x1 = columns[k].x1
                group.insert(k)
            }
        }
        return merged
    }

    /// The column under a word's centre: the one containing it, else the nearest. Columns are
    /// sorted and apart, so a binary search finds it (a page may hold thousands of columns).
    static func column(of word: PDFWord, _ columns: [Span]) -> Int {
        let x = word.centerX
        var low = 0
        var high = columns.count
        // The first column whose right edge is at or past x.
        while low < high {
            let mid = (low + high) / 2
            if columns[mid].x1 < x { low = mid + 1 } else { high = mid }
        }
        if low == columns.count { return columns.count - 1 }
        if x >= columns[low].x0 || low == 0 { return low }
        return x - columns[low - 1].x1 <= columns[low].x0 - x ? low - 1 : low
    }

    /// Whether each phrase of the line reaches into one column only (its text may run past the
    /// column's edge, as a header wider than its values does, but not over a neighbour) and no
    /// two phrases share a column.
    static func fits(_ line: Line, _ columns: [Span]) -> Bool {
        var used = Set<Int>()
        let slack = max(2, line.height)
        for phrase in line.phrases {
            let e = line.extent(phrase)
            // The columns it overlaps by more than the slack, from the first whose right edge is
            // past its left edge (binary search), stopping at the second.
            var low = 0
            var high = columns.count
            while low < high {
                let mid = (low + high) / 2
                if columns[mid].x1 <= e.x0 + slack { low = mid + 1 } else { high = mid }
            }
            var reached: [Int] = []
            while low < columns.count, columns[low].x0 < e.x1 - slack, reached.count < 2 {
                if min(e.x1, columns[low].x1) - max(e.x0, columns[low].x0) > slack { reached.append(low) }
                low += 1
            }
            guard reached.count <= 1 else { return false }
            let k = reached.first ?? column(of: PDFWord(text: "", x0: e.x0, y0: 0, x1: e.x1, y1: 0), columns)
            guard used.insert(k).inserted else { return false }
        }
        return true
    }

    static func cells(_ line: Line, _ columns: [Span]) -> [String?] {
        var words = [[PDFWord]](repeating: [], count: columns.count)
        for word in line.words { words[column(of: word, columns)].append(word) }
        return words.map { $0.isEmpty ? nil : text(of: $0[...]) }
    }

    static func text(of words: ArraySlice<PDFWord>) -> String { words.map(\.text).joined(separator: " ") }
}

/// The rows of a PDF's table as records, like a sheet's: `skipping` rows first, each padded to
/// `width` columns. Reading the pages counts as the first half of the progress, loading the
/// rows as the second.
struct PDFReader: RecordReader {
    let declaredColumns: [String]? = nil
    private let rows: [[String?]]
    private let fileSize: Int64
    private var index: Int
    private let width: Int?

    init(rows: [[String?]], fileSize: Int64, skipping start: Int64, width: Int?) {
        self.rows = rows
        self.fileSize = fileSize
        index = Int(min(start, Int64(rows.count)))
        self.width = width
    }

    var bytesConsumed: Int64 { fileSize / 2 + (rows.isEmpty ? 0 : Int64(Double(index) / Double(rows.count) * Double(fileSize / 2))) }

    mutating func next(into record: inout Record) throws -> Bool {
        guard index < rows.count else { return false }
        let row = rows[index]
        record.reset()
        for k in 0..<max(width ?? row.count, row.count) {
            if k < row.count, let text = row[k] { record.appendField(text) } else { record.endField() }
        }
        // Rows are numbered from 1 in the rebuilt table (its header row being row 1).
        record.line = index + 1
        record.offset = Int64(index)
        record.blankBefore = false
        index += 1
        return true
    }
}
