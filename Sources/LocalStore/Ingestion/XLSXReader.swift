import Foundation

/// An XLSX workbook: the zip (`SpreadsheetArchive`) is opened, its small parts (workbook, relationships, styles,
/// shared strings) are read, and the chosen sheet's XML is inflated to a work file in chunks,
/// then scanned row by row.
final class XLSXWorkbook: SpreadsheetWorkbook {
    let sheetNames: [String]
    let sheetIndex: Int
    let sheetFile: URL
    let sharedStrings: [String]
    /// Per cell style index: 0 not a date, 1 a date (and time), 2 a time of day.
    let dateStyles: [UInt8]
    let date1904: Bool
    /// The archive's size, for progress: the sheet's scanned bytes are scaled to it.
    let archiveSize: Int64

    init(archive: SpreadsheetArchive, sheet: String?, workDirectory: URL, name: String) throws {
        archiveSize = archive.size
        guard let workbook = try archive.read("xl/workbook.xml") else {
            throw IngestionFailure("the file is a zip archive but not an XLSX workbook (no xl/workbook.xml)")
        }
        var names: [String] = []
        var ids: [String] = []
        var is1904 = false
        workbook.withUnsafeBytes { raw in
            var s = XMLScan(raw.bindMemory(to: UInt8.self))
            while let ev = s.next() {
                guard case .open(let tag, _) = ev else { continue }
                if s.isName(tag, "sheet") {
                    names.append(s.attribute(tag, "name") ?? "Sheet\(names.count + 1)")
                    ids.append(s.attribute(tag, "id") ?? "")
                } else if s.isName(tag, "workbookPr"), let v = s.attribute(tag, "date1904") {
                    is1904 = v == "1" || v.lowercased() == "true"
                }
            }
        }
        sheetNames = names
        date1904 = is1904
        let index = try Self.chooseSheet(sheet, among: names)
        sheetIndex = index
        var targets: [String: String] = [:]
        if let rels = try archive.read("xl/_rels/workbook.xml.rels") {
            rels.withUnsafeBytes { raw in
                var s = XMLScan(raw.bindMemory(to: UInt8.self))
                while let ev = s.next() {
                    if case .open(let tag, _) = ev, s.isName(tag, "Relationship"), let id = s.attribute(tag, "Id"), let t = s.attribute(tag, "Target") {
                        targets[id] = t
                    }
                }
            }
        }
        var sheetPath = "xl/worksheets/sheet\(index + 1).xml"
        if let t = targets[ids[index]] {
            sheetPath = t.hasPrefix("/") ? String(t.dropFirst()) : "xl/" + t
        }
        // Shared strings: one string per <si>, its <t> runs joined (phonetic runs left out).
        var strings: [String] = []
        if let sst = try archive.read("xl/sharedStrings.xml") {
            sst.withUnsafeBytes { raw in
                var s = XMLScan(raw.bindMemory(to: UInt8.self))
                var current: [UInt8] = []
                var inT = false
                var phonetic = 0
                while let ev = s.next() {
                    switch ev {
                    case .open(let tag, let selfClosing):
                        if s.isName(tag, "si") { current.removeAll(keepingCapacity: true); if selfClosing { strings.append("") } }
                        else if s.isName(tag, "t") { inT = !selfClosing }
                        else if s.isName(tag, "rPh") { phonetic += selfClosing ? 0 : 1 }
                    case .close(let tag):
                        if s.isName(tag, "si") { strings.append(String(decoding: current, as: UTF8.self)) }
                        else if s.isName(tag, "t") { inT = false }
                        else if s.isName(tag, "rPh") { phonetic -= 1 }
                    case .text(let r):
                        if inT, phonetic == 0 { XMLScan.decode(UnsafeBufferPointer(rebasing: s.b[r]), into: &current) }
                    }
                }
            }
        }
        sharedStrings = strings
        // Styles: which cell formats show dates.
        var styles: [UInt8] = []
        if let data = try archive.read("xl/styles.xml") {
            data.withUnsafeBytes { raw in
                var s = XMLScan(raw.bindMemory(to: UInt8.self))
                var custom: [Int: String] = [:]
                var inCellXfs = false
                while let ev = s.next() {
                    switch ev {
                    case .open(let tag, let selfClosing):
                        if s.isName(tag, "numFmt"), let id = s.attribute(tag, "numFmtId").flatMap({ Int($0) }) {
                            custom[id] = s.attribute(tag, "formatCode") ?? ""
                        } else if s.isName(tag, "cellXfs") {
                            inCellXfs = !selfClosing
                        } else if inCellXfs, s.isName(tag, "xf") {
                            let id = s.attribute(tag, "numFmtId").flatMap { Int($0) } ?? 0
                            styles.append(Self.dateKind(id: id, code: custom[id]))
                        }
                    case .close(let tag):
                        if s.isName(tag, "cellXfs") { inCellXfs = false }
                    case .text: break
                    }
                }
            }
        }
        dateStyles = styles
        guard let sheetEntry = archive.entry(sheetPath) else { throw IngestionFailure("the workbook's sheet \"\(names[index])\" is missing (\(sheetPath))") }
        sheetFile = workDirectory.appendingPathComponent(name + ".sheet.xml")
        try archive.extract(sheetEntry, to: sheetFile)
    }

    func reader(skipping start: Int64, width: Int?) throws -> any RecordReader {
        try XLSXReader(workbook: self, skipping: start, width: width)
    }

    /// 0 not a date, 1 a date or date-time, 2 a time of day (or a duration).
    static func dateKind(id: Int, code: String?) -> UInt8 {
        switch id {
        case 14...17, 22: return 1
        case 18...21, 45...47: return 2
        default: break
        }
        guard let code else { return 0 }
        // Date tokens outside quotes, brackets and escapes; only the first section counts.
        var hasDate = false
        var hasTime = false
        var inQuote = false
        var inBracket = false
        var escaped = false
        for ch in code.lowercased() {
            if escaped { escaped = false; continue }
            if inQuote { if ch == "\"" { inQuote = false }; continue }
            if inBracket {
                if ch == "]" { inBracket = false }
                continue
            }
            switch ch {
            case "\\", "_", "*": escaped = true
            case "\"": inQuote = true
            case "[": inBracket = true
            case ";": return hasDate ? 1 : (hasTime ? 2 : 0)
            case "d", "y": hasDate = true
            case "m": hasDate = hasDate || !hasTime
            case "h", "s": hasTime = true
            default: break
            }
        }
        return hasDate ? 1 : (hasTime ? 2 : 0)
    }

    deinit { try? FileManager.default.removeItem(at: sheetFile) }
}

/// The rows of one sheet, scanned from its inflated XML. A record's `offset` is its ordinal
/// among the sheet's non-empty rows, so reading can restart at a data row; `line` is the sheet's
/// row number. Strings are marked as text; numbers, booleans and dates come out as their text.
struct XLSXReader: RecordReader {
    let declaredColumns: [String]? = nil
    private let workbook: XLSXWorkbook
    private let sheet: MappedSheet
    private var position = 0
    private var ordinal: Int64 = 0
    private let skip: Int64
    private let width: Int?
    private var lastRow = 0
    /// Merged ranges (rows and columns 1-based, inclusive) whose covered cells take the anchor's value.
    private let merges: [(r0: Int, c0: Int, r1: Int, c1: Int)]
    private var anchors: [Int: (String, Bool)] = [:]

    /// Progress in the archive's bytes (the inflated sheet is larger than the file).
    var bytesConsumed: Int64 { sheet.bytes.isEmpty ? 0 : Int64(Double(position) / Double(sheet.bytes.count) * Double(workbook.archiveSize)) }

    init(workbook: XLSXWorkbook, skipping start: Int64, width: Int?) throws {
        self.workbook = workbook
        sheet = try MappedSheet(url: workbook.sheetFile)
        skip = start
        self.width = width
        // <mergeCells> follows <sheetData>: look for it in the file's tail.
        var found: [(Int, Int, Int, Int)] = []
        sheet.scan { all in
            let from = max(0, all.count - (8 << 20))
            var s = XMLScan(UnsafeBufferPointer(rebasing: all[from...]))
            // Start at the last </sheetData> (or the tail start).
            while let ev = s.next() {
                if case .open(let tag, _) = ev, s.isName(tag, "mergeCell"), let ref = s.attribute(tag, "ref") {
                    let parts = ref.split(separator: ":")
                    if parts.count == 2, let a = Self.cellRef(Array(parts[0].utf8)), let b = Self.cellRef(Array(parts[1].utf8)), found.count < 10000 {
                        found.append((a.row, a.column, b.row, b.column))
                    }
                }
            }
        }
        merges = found.map { (r0: $0.0, c0: $0.1, r1: $0.2, c1: $0.3) }
    }

    /// "C7" → column 3, row 7; nil past a sheet's bounds (XFD, row 1,048,576), so that a
    /// forged reference such as "AAAAAAAAAAAAAAA1" cannot overflow (found by FuzzXLSX).
    static func cellRef(_ s: [UInt8]) -> (column: Int, row: Int)? {
        var column = 0
        var row = 0
        var k = 0
        // A reference longer than any real one is refused before its number can overflow.
        while k < s.count, (0x41...0x5A).contains(s[k]) || (0x61...0x7A).contains(s[k]) {
            column = column * 26 + Int((s[k] & 0xDF) - 0x40)
            k += 1
            if column > 1 << 20 { return nil }
        }
        while k < s.count, (0x30...0x39).contains(s[k]) {
            row = row * 10 + Int(s[k] - 0x30)
            k += 1
            if row > 1 << 30 { return nil }
        }
        return column > 0 ? (column, row) : nil
    }

    static let maxColumn = 16_384
    static let maxRow = 1_048_576

    mutating func next(into record: inout Record) throws -> Bool {
        while true {
            guard var row = try readRow() else { return false }
            defer { ordinal += 1 }
            if ordinal < skip { continue }
            record.fill(sheetRow: &row, errorCells: errorCells, width: width)
            record.line = lastRowNumber
            record.offset = ordinal
            record.blankBefore = gap
            return true
        }
    }

    private var lastRowNumber = 0
    private var gap = false
    /// The current row's error cells (`t="e"`): column index and the error's text.
    private var errorCells: [(Int, String)] = []

    /// The next row with at least one value: (text, is a string) per column, nil for empty.
    private mutating func readRow() throws -> [(text: String, isText: Bool)?]? {
        let wb = workbook
        let merges = merges
        var anchors = anchors
        defer { self.anchors = anchors }
        defer { sheet.release(before: position) }
        return sheet.scan { bytes -> [(text: String, isText: Bool)?]? in
            var s = XMLScan(bytes)
            s.i = position
            defer { position = s.i }
            var cells: [(text: String, isText: Bool)?] = []
            errorCells.removeAll(keepingCapacity: true)
            var inRow = false
            var rowNumber = 0
            var column = 0
            var cellType = ""
            var cellStyle = 0
            var value: [UInt8] = []
            var inValue = false
            var inCell = false
            var hasValue = false
            var phonetic = 0
            while let ev = s.next() {
                switch ev {
                case .open(let tag, let selfClosing):
                    if s.isName(tag, "row") {
                        inRow = !selfClosing
                        rowNumber = s.attribute(tag, "r").flatMap { Int($0) } ?? (lastRow + 1)
                        column = 0
                        cells.removeAll()
                        if selfClosing { lastRow = rowNumber }
                    } else if inRow, s.isName(tag, "c") {
                        column += 1
                        if let ref = s.attribute(tag, "r"), let parsed = Self.cellRef(Array(ref.utf8)) { column = parsed.column }
                        cellType = s.attribute(tag, "t") ?? "n"
                        cellStyle = s.attribute(tag, "s").flatMap { Int($0) } ?? 0
                        value.removeAll(keepingCapacity: true)
                        hasValue = false
                        inCell = !selfClosing
                    } else if inCell, s.isName(tag, "v") || s.isName(tag, "t") {
                        inValue = !selfClosing
                        hasValue = true
                    } else if inCell, s.isName(tag, "rPh") {
                        phonetic += selfClosing ? 0 : 1
                    }
                case .close(let tag):
                    if inCell, s.isName(tag, "v") || s.isName(tag, "t") {
                        inValue = false
                    } else if inCell, s.isName(tag, "rPh") {
                        phonetic -= 1
                    } else if inCell, s.isName(tag, "c") {
                        inCell = false
                        guard hasValue, column >= 1, column <= 16384 else { continue }
                        if cellType == "e" {
                            errorCells.append((column - 1, String(decoding: value, as: UTF8.self)))
                            continue
                        }
                        let cell = Self.cell(value, type: cellType, style: cellStyle, workbook: wb)
                        if let cell {
                            while cells.count < column { cells.append(nil) }
                            cells[column - 1] = cell
                        }
                    } else if s.isName(tag, "row") {
                        inRow = false
                        // Merged ranges: covered cells take the anchor's value.
                        for m in merges where m.r0 <= rowNumber && rowNumber <= m.r1 && (m.r1 - m.r0 + 1) * (m.c1 - m.c0 + 1) <= 100_000 {
                            if rowNumber == m.r0, m.c0 - 1 < cells.count, let a = cells[m.c0 - 1] { anchors[m.r0 << 16 | m.c0] = a }
                            guard let a = anchors[m.r0 << 16 | m.c0] else { continue }
                            for c in m.c0...m.c1 where !(c == m.c0 && rowNumber == m.r0) {
                                while cells.count < c { cells.append(nil) }
                                if cells[c - 1] == nil { cells[c - 1] = a }
                            }
                        }
                        let previous = lastRow
                        lastRow = rowNumber
                        if cells.contains(where: { $0 != nil }) || !errorCells.isEmpty {
                            while cells.count < (errorCells.map(\.0).max() ?? -1) + 1 { cells.append(nil) }
                            gap = rowNumber > previous + 1 && previous > 0
                            lastRowNumber = rowNumber
                            return cells
                        }
                    } else if s.isName(tag, "sheetData") {
                        s.i = s.b.count
                        return nil
                    }
                case .text(let r):
                    if inValue, phonetic == 0 { XMLScan.decode(UnsafeBufferPointer(rebasing: s.b[r]), into: &value) }
                }
            }
            return nil
        }
    }

    /// A cell's text and whether it is a string; nil for an empty cell (error cells are taken
    /// apart before, so that they are reported).
    static func cell(_ v: [UInt8], type: String, style: Int, workbook: XLSXWorkbook) -> (String, Bool)? {
        let text = String(decoding: v, as: UTF8.self)
        switch type {
        case "s":
            guard let i = Int(text), i >= 0, i < workbook.sharedStrings.count else { return nil }
            return (workbook.sharedStrings[i], true)
        case "inlineStr", "str": return (text, true)
        case "b": return (text == "1" || text.lowercased() == "true" ? "true" : "false", false)
        case "d": return text.isEmpty ? nil : (text, false)
        default:
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { return nil }
            let kind = style < workbook.dateStyles.count ? workbook.dateStyles[style] : 0
            if kind != 0, let serial = Double(trimmed) {
                return (formatSerial(serial, kind: kind, date1904: workbook.date1904), false)
            }
            return (number(trimmed), false)
        }
    }

    /// Integers without a fraction; other numbers as Swift prints the nearest double.
    static func number(_ s: String) -> String {
        guard let d = Double(s) else { return s }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }

    /// A serial date as ISO text: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS`, or `HH:MM:SS` for a time.
    static func formatSerial(_ serial: Double, kind: UInt8, date1904: Bool) -> String {
        var value = serial
        // 1900 system: serials before 1900-03-01 are off by one (Lotus's 1900-02-29).
        if !date1904, value > 0, value < 60 { value += 1 }
        var days = Int(value.rounded(.down))
        var seconds = Int(((value - Double(days)) * 86400).rounded())
        if seconds >= 86400 { days += 1; seconds -= 86400 }
        if kind == 2, days == 0 || (!date1904 && serial < 1) { return SheetDates.clock(seconds) }
        // Days since 1970-01-01.
        let epoch = date1904 ? 24107 : 25569
        return SheetDates.iso(days: Int64(days - epoch), seconds: seconds)
    }
}
