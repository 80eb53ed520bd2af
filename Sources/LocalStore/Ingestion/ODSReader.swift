import Foundation
import DataSourceDomain

/// An OpenDocument spreadsheet: the zip is opened with the archive code XLSX uses,
/// `content.xml` (every sheet, one after the other) is inflated to a work file in chunks, and
/// the chosen sheet's `<table:table>` element is located, to be scanned row by row.
final class ODSWorkbook: SpreadsheetWorkbook {
    let sheetNames: [String]
    let sheetIndex: Int
    let contentFile: URL
    /// The chosen sheet's content in `contentFile`: from just after its `<table:table …>` tag
    /// to just after its closing tag.
    let tableRange: Range<Int>
    /// The archive's size, for progress: the sheet's scanned bytes are scaled to it.
    let archiveSize: Int64
    /// How many cells repeated rows may add to the load (see `ODSReader.repeatedCellBudget`).
    let repeatedCellBudget: Int

    init(archive: SpreadsheetArchive, sheet: String?, workDirectory: URL, name: String) throws {
        archiveSize = archive.size
        repeatedCellBudget = ODSReader.repeatedCellBudget(inflationCap: archive.cap)
        guard let content = archive.entry("content.xml") else {
            throw IngestionFailure("the file is a zip archive but not an OpenDocument spreadsheet (no content.xml)")
        }
        // A password-protected document keeps its parts encrypted; the manifest says so.
        if let manifest = try archive.read("META-INF/manifest.xml"), manifest.range(of: Data("encryption-data".utf8)) != nil {
            throw IngestionFailure("the ODS file is password-protected (encrypted), which cannot be read; save it without a password")
        }
        contentFile = workDirectory.appendingPathComponent(name + ".content.xml")
        try archive.extract(content, to: contentFile)
        var tables: [(name: String, range: Range<Int>)] = []
        do {
            let mapped = try MappedSheet(url: contentFile)
            mapped.scan { bytes in
                var s = XMLScan(bytes)
                // Tables nested in a cell (sub-tables) are part of their sheet, not sheets.
                var depth = 0
                var open: (name: String, start: Int)?
                while let event = s.next() {
                    switch event {
                    case .open(let tag, let selfClosing):
                        guard s.isName(tag, "table") else { continue }
                        if depth == 0 {
                            let sheetName = s.attribute(tag, "name") ?? "Sheet\(tables.count + 1)"
                            if selfClosing { tables.append((sheetName, s.i..<s.i)) } else { open = (sheetName, s.i) }
                        }
                        if !selfClosing { depth += 1 }
                    case .close(let tag):
                        // Only names are wanted here: the pages passed are given back.
                        mapped.release(before: s.i)
                        guard s.isName(tag, "table"), depth > 0 else { continue }
                        depth -= 1
                        if depth == 0, let table = open {
                            tables.append((table.name, table.start..<s.i))
                            open = nil
                        }
                    case .text: break
                    }
                }
                // A document cut short still gives the rows it has.
                if let table = open { tables.append((table.name, table.start..<s.b.count)) }
            }
        } catch {
            try? FileManager.default.removeItem(at: contentFile)
            throw error
        }
        sheetNames = tables.map(\.name)
        do {
            sheetIndex = try Self.chooseSheet(sheet, among: sheetNames)
        } catch {
            try? FileManager.default.removeItem(at: contentFile)
            throw error
        }
        tableRange = tables[sheetIndex].range
    }

    func reader(skipping start: Int64, width: Int?) throws -> any RecordReader {
        try ODSReader(workbook: self, skipping: start, width: width)
    }

    deinit { try? FileManager.default.removeItem(at: contentFile) }
}

/// A merged range met in an ODS sheet: 0-based columns and 1-based last row, inclusive; its
/// covered cells take `value`, the anchor's.
struct MergedRange {
    var c0: Int
    var c1: Int
    var r1: Int
    var value: (text: String, isText: Bool)
}

/// Which merged range covers each column of the row being read: the first one added that
/// reaches the column and the row. Built once a row, and extended as ranges are added within
/// it, rather than searching every range for every covered cell: a 1 KB file of 1,000
/// ranges and 20 rows of 16,383 repeated covered cells made 330 million comparisons and took
/// 267 s to load. Building costs the ranges plus the columns they reach, once a row.
struct MergedRangeCover {
    private var row = -1
    /// For each column, the index in the ranges of the one that covers it, or -1.
    private var owner: [Int32] = []
    /// next[c]: the first column from c on not yet owned (path-compressed); next[owner.count]
    /// is owner.count, the end.
    private var next: [Int] = [0]
    /// The ranges already applied: `ranges[..<applied]`.
    private var applied = 0

    mutating func update(_ ranges: [MergedRange], row: Int) {
        if row != self.row {
            self.row = row
            owner.removeAll(keepingCapacity: true)
            next = [0]
            applied = 0
        }
        while applied < ranges.count {
            let range = ranges[applied]
            if range.r1 >= row { own(from: range.c0, through: min(range.c1, ODSReader.maxColumns - 1), by: applied) }
            applied += 1
        }
    }

    func span(at column: Int) -> Int? {
        guard column < owner.count, owner[column] >= 0 else { return nil }
        return Int(owner[column])
    }

    /// Gives the columns `start...end` that no earlier range owns to range `index`; each column
    /// is visited once however many ranges overlap it.
    private mutating func own(from start: Int, through end: Int, by index: Int) {
        guard start >= 0, start <= end else { return }
        while owner.count <= end {
            owner.append(-1)
            next.append(owner.count)
        }
        var c = first(from: start)
        while c <= end {
            owner[c] = Int32(index)
            next[c] = c + 1
            c = first(from: c + 1)
        }
    }

    private mutating func first(from column: Int) -> Int {
        var root = column
        while next[root] != root { root = next[root] }
        var c = column
        while next[c] != root {
            let following = next[c]
            next[c] = root
            c = following
        }
        return root
    }
}

/// The rows of one ODS sheet. As for XLSX, a record's `offset` is its ordinal among the
/// sheet's non-empty rows (a row repeated N times counts N), `line` the sheet's row number.
/// Repeated empty rows and cells — LibreOffice writes the rest of the sheet as one empty row
/// repeated a million times, and a row's tail as one empty cell repeated — cost nothing:
/// empty cells are only counted, and materialised when a value follows them.
struct ODSReader: RecordReader {
    typealias Cell = (text: String, isText: Bool)
    /// Columns past this are ignored (the widest sheet LibreOffice and Excel allow).
    static let maxColumns = 16384
    /// Rows past this end the sheet (the tallest sheet LibreOffice and Excel allow), so that
    /// a small file repeating a row billions of times cannot load forever.
    static let maxRows = 1 << 20

    /// The cells that repeated rows may add, past the first copy of each. A repeat costs no
    /// bytes, so without this a file of a few hundred bytes — one row of 2,000 values repeated
    /// a million times — asks for two billion cells, hours of loading. The bound is what the
    /// shared inflation cap lets a sheet written out cell by cell hold (16 bytes for the
    /// smallest cell an XLSX sheet can have, `<c><v>1</v></c>`): at least 16.7 million cells,
    /// so that a million repeated rows of a few columns, which LibreOffice can write, still load.
    static func repeatedCellBudget(inflationCap: Int64) -> Int { Int(clamping: inflationCap / 16) }

    /// A repeat or span count as written, within 1…`limit` (the attribute is untrusted).
    static func count(_ text: String?, limit: Int) -> Int {
        guard let text, let n = Int(text.trimmingCharacters(in: .whitespaces)) else { return 1 }
        return min(max(n, 1), limit)
    }

    let declaredColumns: [String]? = nil
    private let workbook: ODSWorkbook
    private let sheet: MappedSheet
    private var position: Int
    private var ordinal: Int64 = 0
    private let skip: Int64
    private let width: Int?
    /// The sheet's row number of the last row read (repeats counted).
    private var rowNumber = 0
    private var lastEmitted = 0
    /// A non-empty row with `table:number-rows-repeated`: what it holds and how many more
    /// times it comes.
    private var repeated: (cells: [Cell?], errors: [(Int, String)]) = ([], [])
    private var repeatsLeft = 0
    /// What is left of the workbook's `repeatedCellBudget`.
    private var repeatedCellsLeft: Int
    /// Merged ranges (`table:number-columns-spanned` / `-rows-spanned`), 0-based columns and
    /// 1-based rows, inclusive: their covered cells take the anchor's value, as in XLSX.
    private var spans: [MergedRange] = []
    private var cover = MergedRangeCover()

    var bytesConsumed: Int64 {
        let range = workbook.tableRange
        guard !range.isEmpty else { return 0 }
        return Int64(Double(position - range.lowerBound) / Double(range.count) * Double(workbook.archiveSize))
    }

    init(workbook: ODSWorkbook, skipping start: Int64, width: Int?) throws {
        self.workbook = workbook
        sheet = try MappedSheet(url: workbook.contentFile)
        position = workbook.tableRange.lowerBound
        skip = start
        self.width = width
        repeatedCellsLeft = workbook.repeatedCellBudget
    }

    mutating func next(into record: inout Record) throws -> Bool {
        while true {
            var row: [Cell?]
            var errors: [(Int, String)]
            if repeatsLeft > 0 {
                repeatsLeft -= 1
                rowNumber += 1
                (row, errors) = repeated
            } else {
                guard let read = readRow() else { return false }
                (row, errors) = (read.cells, read.errors)
                if read.repeats > 1 {
                    // Charged up front, at the width the rows will be stored at, so that a
                    // repeat past the budget fails at once instead of after hours of work.
                    let storedWidth = max(read.cells.count, width ?? 0, 1)
                    let cellsAdded = (read.repeats - 1).multipliedReportingOverflow(by: storedWidth)
                    guard !cellsAdded.overflow, cellsAdded.partialValue <= repeatedCellsLeft else {
                        throw IngestionFailure(
                            "the ODS sheet repeats row \(rowNumber) \(read.repeats) times, more cells (\(read.repeats) × \(storedWidth)) than a file of this size may describe (at most \(workbook.repeatedCellBudget) cells from repeated rows; a repeat bomb?)")
                    }
                    repeatedCellsLeft -= cellsAdded.partialValue
                    repeated = (read.cells, read.errors)
                    repeatsLeft = read.repeats - 1
                }
            }
            defer { ordinal += 1 }
            if ordinal < skip {
                lastEmitted = rowNumber
                continue
            }
            record.fill(sheetRow: &row, errorCells: errors, width: width)
            record.line = rowNumber
            record.offset = ordinal
            record.blankBefore = rowNumber > lastEmitted + 1 && lastEmitted > 0
            lastEmitted = rowNumber
            return true
        }
    }

    /// The attributes of a cell that say what it holds.
    private struct CellAttributes {
        var valueType = ""
        var calcextType = ""
        var value: String?
        var dateValue: String?
        var timeValue: String?
        var booleanValue: String?
        var stringValue: String?
        var repeats = 1
        var columnsSpanned = 1
        var rowsSpanned = 1
        var covered = false
    }

    /// The next row with at least one value or error cell, and how many times it repeats;
    /// nil at the end of the sheet.
    private mutating func readRow() -> (cells: [Cell?], errors: [(Int, String)], repeats: Int)? {
        let end = workbook.tableRange.upperBound
        var spans = spans
        defer { self.spans = spans }
        var cover = cover
        defer { self.cover = cover }
        var rowNumber = rowNumber
        defer { self.rowNumber = rowNumber }
        defer { sheet.release(before: position) }
        return sheet.scan { bytes -> (cells: [Cell?], errors: [(Int, String)], repeats: Int)? in
            var s = XMLScan(UnsafeBufferPointer(rebasing: bytes[..<end]))
            s.i = position
            defer { position = s.i }
            var cells: [Cell?] = []
            var errors: [(Int, String)] = []
            // Empty cells met since the last value: materialised only when a value follows.
            var pendingEmpty = 0
            var column = 0
            var inRow = false
            var rowRepeats = 1
            var thisRow = 0
            var cell: CellAttributes?
            var text: [UInt8] = []
            var paragraphs = 0
            var paragraphDepth = 0
            var annotationDepth = 0
            var nestedTables = 0

            func place(_ attributes: CellAttributes, text: [UInt8]) {
                let count = min(attributes.repeats, Self.maxColumns - column)
                guard count > 0 else { return }
                var value: Cell?
                if attributes.calcextType == "error" {
                    let message = String(decoding: text, as: UTF8.self)
                    for k in 0..<count { errors.append((column + k, message)) }
                } else {
                    value = Self.value(attributes, text: text)
                }
                if value == nil, attributes.covered, !spans.isEmpty {
                    // Covered cells one by one: each may sit under a different merged range.
                    cover.update(spans, row: thisRow)
                    for k in 0..<count {
                        if let span = cover.span(at: column + k) {
                            cells += Array(repeating: nil, count: pendingEmpty)
                            pendingEmpty = 0
                            cells.append(spans[span].value)
                        } else {
                            pendingEmpty += 1
                        }
                    }
                } else if let value {
                    cells += Array(repeating: nil, count: pendingEmpty)
                    pendingEmpty = 0
                    cells += Array(repeating: value, count: count)
                    if attributes.columnsSpanned > 1 || attributes.rowsSpanned > 1, spans.count < 10000 {
                        spans.append(MergedRange(c0: column, c1: column + attributes.columnsSpanned - 1, r1: thisRow + attributes.rowsSpanned - 1, value: value))
                    }
                } else {
                    pendingEmpty += count
                }
                column += count
            }

            while let event = s.next() {
                switch event {
                case .open(let tag, let selfClosing):
                    if nestedTables > 0 {
                        if s.isName(tag, "table"), !selfClosing { nestedTables += 1 }
                        continue
                    }
                    if cell != nil {
                        if annotationDepth > 0 {
                            if s.isName(tag, "annotation"), !selfClosing { annotationDepth += 1 }
                        } else if s.isName(tag, "annotation") {
                            if !selfClosing { annotationDepth = 1 }
                        } else if s.isName(tag, "p") || s.isName(tag, "h") {
                            if paragraphs > 0 { text.append(0x0A) }
                            paragraphs += 1
                            if !selfClosing { paragraphDepth += 1 }
                        } else if paragraphDepth > 0, s.isName(tag, "s") {
                            let spaces = s.attribute(tag, "c").flatMap { Int($0) } ?? 1
                            text += Array(repeating: 0x20, count: min(max(spaces, 1), 1 << 16))
                        } else if paragraphDepth > 0, s.isName(tag, "tab") {
                            text.append(0x09)
                        } else if paragraphDepth > 0, s.isName(tag, "line-break") {
                            text.append(0x0A)
                        } else if s.isName(tag, "table"), !selfClosing {
                            nestedTables = 1
                        }
                        continue
                    }
                    if s.isName(tag, "table-row") {
                        thisRow = rowNumber + 1
                        guard thisRow <= Self.maxRows else {
                            s.i = s.b.count
                            return nil
                        }
                        rowRepeats = Self.count(s.attribute(tag, "number-rows-repeated"), limit: Self.maxRows - thisRow + 1)
                        if selfClosing {
                            rowNumber += rowRepeats
                            continue
                        }
                        inRow = true
                        cells.removeAll(keepingCapacity: true)
                        errors.removeAll(keepingCapacity: true)
                        pendingEmpty = 0
                        column = 0
                    } else if inRow, s.isName(tag, "table-cell") || s.isName(tag, "covered-table-cell") {
                        var attributes = CellAttributes()
                        attributes.covered = s.isName(tag, "covered-table-cell")
                        s.forEachAttribute(tag) { name, value in
                            if s.equals(name, "office:value-type") { attributes.valueType = s.decoded(value) }
                            else if s.equals(name, "calcext:value-type") { attributes.calcextType = s.decoded(value) }
                            else if s.equals(name, "office:value") { attributes.value = s.decoded(value) }
                            else if s.equals(name, "office:date-value") { attributes.dateValue = s.decoded(value) }
                            else if s.equals(name, "office:time-value") { attributes.timeValue = s.decoded(value) }
                            else if s.equals(name, "office:boolean-value") { attributes.booleanValue = s.decoded(value) }
                            else if s.equals(name, "office:string-value") { attributes.stringValue = s.decoded(value) }
                            else if s.equals(name, "table:number-columns-repeated") { attributes.repeats = Self.count(s.decoded(value), limit: Self.maxColumns) }
                            else if s.equals(name, "table:number-columns-spanned") { attributes.columnsSpanned = Self.count(s.decoded(value), limit: Self.maxColumns) }
                            else if s.equals(name, "table:number-rows-spanned") { attributes.rowsSpanned = Self.count(s.decoded(value), limit: Self.maxRows) }
                        }
                        if selfClosing {
                            place(attributes, text: [])
                        } else {
                            cell = attributes
                            text.removeAll(keepingCapacity: true)
                            paragraphs = 0
                            paragraphDepth = 0
                            annotationDepth = 0
                        }
                    }
                case .close(let tag):
                    if nestedTables > 0 {
                        if s.isName(tag, "table") { nestedTables -= 1 }
                        continue
                    }
                    if let attributes = cell {
                        if annotationDepth > 0 {
                            if s.isName(tag, "annotation") { annotationDepth -= 1 }
                        } else if s.isName(tag, "p") || s.isName(tag, "h") {
                            paragraphDepth = max(0, paragraphDepth - 1)
                        } else if s.isName(tag, "table-cell") || s.isName(tag, "covered-table-cell") {
                            cell = nil
                            place(attributes, text: text)
                        }
                        continue
                    }
                    if inRow, s.isName(tag, "table-row") {
                        inRow = false
                        if spans.count > 0, spans.contains(where: { $0.r1 < thisRow }) { spans.removeAll { $0.r1 < thisRow } }
                        if cells.contains(where: { $0 != nil }) || !errors.isEmpty {
                            if let widest = errors.map(\.0).max(), cells.count <= widest { cells += Array(repeating: nil, count: widest + 1 - cells.count) }
                            rowNumber = thisRow
                            return (cells, errors, rowRepeats)
                        }
                        rowNumber = thisRow + rowRepeats - 1
                    } else if s.isName(tag, "table") {
                        s.i = s.b.count
                        return nil
                    }
                case .text(let range):
                    if cell != nil, paragraphDepth > 0, annotationDepth == 0, nestedTables == 0 {
                        XMLScan.decode(UnsafeBufferPointer(rebasing: s.b[range]), into: &text)
                    }
                }
            }
            return nil
        }
    }

    /// A cell's value by its `office:value-type`; nil for an empty cell.
    private static func value(_ a: CellAttributes, text: [UInt8]) -> Cell? {
        switch a.valueType {
        case "float", "percentage", "currency":
            if let v = a.value?.trimmingCharacters(in: .whitespaces), !v.isEmpty { return (XLSXReader.number(v), false) }
        case "date":
            if let v = a.dateValue?.trimmingCharacters(in: .whitespaces), !v.isEmpty { return (isoDate(v) ?? v, false) }
        case "time":
            if let v = a.timeValue?.trimmingCharacters(in: .whitespaces), !v.isEmpty { return (clock(v) ?? v, false) }
        case "boolean":
            if let v = a.booleanValue?.trimmingCharacters(in: .whitespaces).lowercased(), !v.isEmpty {
                return (v == "true" || v == "1" ? "true" : "false", false)
            }
        case "string":
            if let v = a.stringValue { return v.isEmpty ? nil : (v, true) }
        default: break
        }
        // A string cell, a cell without a type, or a typed cell missing its value attribute:
        // its text is what the sheet shows.
        guard !text.isEmpty else { return nil }
        return (String(decoding: text, as: UTF8.self), true)
    }

    /// `office:date-value` (`2024-01-15`, `2024-03-01T13:45:30.5`) as ISO text rounded to the
    /// second: the date alone at midnight, as XLSX dates come out.
    static func isoDate(_ v: String) -> String? {
        let u = Array(v.utf8)
        var k = 0
        func digits(_ count: Int) -> Int? {
            guard k + count <= u.count else { return nil }
            var n = 0
            for c in u[k..<(k + count)] {
                guard (0x30...0x39).contains(c) else { return nil }
                n = n * 10 + Int(c - 0x30)
            }
            k += count
            return n
        }
        func expect(_ c: UInt8) -> Bool {
            guard k < u.count, u[k] == c else { return false }
            k += 1
            return true
        }
        let negative = expect(0x2D)
        var yearDigits = 0
        while k + yearDigits < u.count, (0x30...0x39).contains(u[k + yearDigits]) { yearDigits += 1 }
        guard yearDigits >= 4, var year = digits(yearDigits), expect(0x2D), let month = digits(2), expect(0x2D), let day = digits(2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        if negative { year = -year }
        var seconds = 0.0
        if expect(0x54) {
            guard let h = digits(2), expect(0x3A), let m = digits(2), expect(0x3A), let sec = digits(2) else { return nil }
            var fraction = 0.0
            if expect(0x2E) {
                var scale = 0.1
                while k < u.count, (0x30...0x39).contains(u[k]) {
                    fraction += Double(u[k] - 0x30) * scale
                    scale /= 10
                    k += 1
                }
            }
            seconds = Double(h * 3600 + m * 60 + sec) + fraction
        }
        // A zone suffix (`Z`, `+01:00`) is ignored: sheets hold wall-clock dates.
        guard var days = CivilDate.days(year: year, month: month, day: day) else { return nil }
        var whole = Int(seconds.rounded())
        if whole >= 86400 {
            days += Int64(whole / 86400)
            whole %= 86400
        }
        return SheetDates.iso(days: days, seconds: whole)
    }

    /// `office:time-value`, an ISO 8601 duration (`PT13H45M30S`, `PT36H00M00.5S`), as
    /// `HH:MM:SS` rounded to the second (hours past 24 kept, as a duration).
    static func clock(_ v: String) -> String? {
        var rest = Substring(v.uppercased())
        guard rest.hasPrefix("PT") || rest.hasPrefix("P") else { return nil }
        rest = rest.dropFirst()
        var total = 0.0
        var number = ""
        var inTime = false
        for ch in rest {
            switch ch {
            case "0"..."9", ".": number.append(ch)
            case "T": inTime = true
            case "D", "H", "M", "S":
                guard let n = Double(number) else { return nil }
                number = ""
                switch ch {
                case "D": total += n * 86400
                case "H": total += n * 3600
                case "M": guard inTime else { return nil }; total += n * 60
                default: total += n
                }
            default: return nil
            }
        }
        guard number.isEmpty, total.isFinite, total < 1e9 else { return nil }
        return SheetDates.clock(Int(total.rounded()))
    }
}
