import Foundation
import ZIPFoundation

/// A minimal XML tokenizer over bytes: tags with lazily read attributes, and text between them.
/// No DOM is built; callers walk the events they need.
struct XMLScan {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0

    init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

    enum Event { case open(Range<Int>, selfClosing: Bool), close(Range<Int>), text(Range<Int>) }

    /// The next event; nil at the end.
    mutating func next() -> Event? {
        guard i < b.count else { return nil }
        if b[i] != 0x3C {
            let start = i
            while i < b.count, b[i] != 0x3C { i += 1 }
            return .text(start..<i)
        }
        // Comments, declarations, processing instructions: skipped.
        if i + 1 < b.count, b[i + 1] == 0x3F || b[i + 1] == 0x21 {
            if i + 3 < b.count, b[i + 2] == 0x2D, b[i + 3] == 0x2D {
                i += 4
                while i + 2 < b.count, !(b[i] == 0x2D && b[i + 1] == 0x2D && b[i + 2] == 0x3E) { i += 1 }
                i = min(b.count, i + 3)
            } else {
                while i < b.count, b[i] != 0x3E { i += 1 }
                i = min(b.count, i + 1)
            }
            return next()
        }
        let start = i + 1
        var quote: UInt8 = 0
        i += 1
        while i < b.count {
            let c = b[i]
            if quote != 0 { if c == quote { quote = 0 } } else if c == 0x22 || c == 0x27 { quote = c } else if c == 0x3E { break }
            i += 1
        }
        let end = min(i, b.count)
        i = min(b.count, i + 1)
        if start < end, b[start] == 0x2F { return .close((start + 1)..<end) }
        if end > start, b[end - 1] == 0x2F { return .open(start..<(end - 1), selfClosing: true) }
        return .open(start..<end, selfClosing: false)
    }

    /// The tag's local name (without a namespace prefix).
    func name(_ tag: Range<Int>) -> Substring.UTF8View.SubSequence {
        var end = tag.lowerBound
        while end < tag.upperBound, !Self.isSpace(b[end]) { end += 1 }
        var start = tag.lowerBound
        for k in tag.lowerBound..<end where b[k] == 0x3A { start = k + 1 }
        return Substring(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self).utf8[...]
    }

    func isName(_ tag: Range<Int>, _ local: StaticString) -> Bool {
        var end = tag.lowerBound
        while end < tag.upperBound, !Self.isSpace(b[end]) { end += 1 }
        var start = tag.lowerBound
        for k in tag.lowerBound..<end where b[k] == 0x3A { start = k + 1 }
        let n = local.utf8CodeUnitCount
        guard end - start == n else { return false }
        let p = local.utf8Start
        for k in 0..<n where b[start + k] != p[k] { return false }
        return true
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }

    /// The value of an attribute (matched on its local name), entities decoded.
    func attribute(_ tag: Range<Int>, _ local: String) -> String? {
        let want = Array(local.utf8)
        var k = tag.lowerBound
        while k < tag.upperBound, !Self.isSpace(b[k]) { k += 1 }
        while k < tag.upperBound {
            while k < tag.upperBound, Self.isSpace(b[k]) { k += 1 }
            let nameStart = k
            while k < tag.upperBound, b[k] != 0x3D, !Self.isSpace(b[k]) { k += 1 }
            let nameEnd = k
            while k < tag.upperBound, b[k] != 0x22, b[k] != 0x27 { k += 1 }
            guard k < tag.upperBound else { return nil }
            let q = b[k]
            k += 1
            let valueStart = k
            while k < tag.upperBound, b[k] != q { k += 1 }
            let valueEnd = k
            k += 1
            var localStart = nameStart
            for m in nameStart..<nameEnd where b[m] == 0x3A { localStart = m + 1 }
            if nameEnd - localStart == want.count, zip(b[localStart..<nameEnd], want).allSatisfy({ $0 == $1 }) {
                var out: [UInt8] = []
                Self.decode(UnsafeBufferPointer(rebasing: b[valueStart..<valueEnd]), into: &out)
                return String(decoding: out, as: UTF8.self)
            }
        }
        return nil
    }

    /// Appends text with XML entities decoded.
    static func decode(_ t: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var k = 0
        while k < t.count {
            let c = t[k]
            guard c == 0x26 else { out.append(c); k += 1; continue }
            var e = k + 1
            while e < t.count, e - k < 12, t[e] != 0x3B { e += 1 }
            guard e < t.count, t[e] == 0x3B else { out.append(c); k += 1; continue }
            let name = String(decoding: UnsafeBufferPointer(rebasing: t[(k + 1)..<e]), as: UTF8.self)
            switch name {
            case "amp": out.append(0x26)
            case "lt": out.append(0x3C)
            case "gt": out.append(0x3E)
            case "quot": out.append(0x22)
            case "apos": out.append(0x27)
            default:
                var scalar: UInt32?
                if name.hasPrefix("#x") || name.hasPrefix("#X") { scalar = UInt32(name.dropFirst(2), radix: 16) } else if name.hasPrefix("#") { scalar = UInt32(name.dropFirst()) }
                if let s = scalar, let u = Unicode.Scalar(s) { out.append(contentsOf: Array(String(Character(u)).utf8)) } else { out.append(contentsOf: Array(t[k...e])) }
            }
            k = e + 1
        }
    }
}

/// An XLSX workbook: the zip is opened, its small parts (workbook, relationships, styles,
/// shared strings) are read, and the chosen sheet's XML is inflated to a work file in chunks,
/// then scanned row by row.
final class XLSXWorkbook {
    /// Inflating stops past this many bytes for one part (and past 100× the archive's size).
    static let absoluteCap: Int64 = 2 << 30
    let sheetNames: [String]
    let sheetFile: URL
    let sharedStrings: [String]
    /// Per cell style index: 0 not a date, 1 a date (and time), 2 a time of day.
    let dateStyles: [UInt8]
    let date1904: Bool
    /// The archive's size, for progress: the sheet's scanned bytes are scaled to it.
    let archiveSize: Int64

    init(url: URL, sheet: String?, workDirectory: URL, name: String) throws {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw IngestionFailure("the XLSX file is not a readable zip archive (corrupt or truncated)")
        }
        let archiveSize = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int64) ?? 0
        self.archiveSize = archiveSize
        let cap = min(Self.absoluteCap, max(256 << 20, archiveSize * 100))
        func entry(_ path: String) -> Entry? {
            archive[path] ?? archive.first { $0.path.lowercased() == path.lowercased() }
        }
        func read(_ path: String) throws -> Data? {
            guard let e = entry(path) else { return nil }
            var data = Data()
            try Self.inflate(archive, e, cap: cap) { data.append($0) }
            return data
        }
        guard let workbook = try read("xl/workbook.xml") else {
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
        guard !names.isEmpty else { throw IngestionFailure("the workbook has no sheets") }
        var index = 0
        if let sheet {
            if let exact = names.firstIndex(of: sheet) {
                index = exact
            } else if let n = Int(sheet.trimmingCharacters(in: .whitespaces)), n >= 1, n <= names.count {
                index = n - 1
            } else {
                let list = names.map { "\"\($0)\"" }.joined(separator: ", ")
                throw IngestionFailure("options.sheet \"\(sheet)\" names no sheet of this workbook; its sheets are \(list) (or a 1-based number)")
            }
        }
        var targets: [String: String] = [:]
        if let rels = try read("xl/_rels/workbook.xml.rels") {
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
        if let sst = try read("xl/sharedStrings.xml") {
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
        if let data = try read("xl/styles.xml") {
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
        guard let sheetEntry = entry(sheetPath) else { throw IngestionFailure("the workbook's sheet \"\(names[index])\" is missing (\(sheetPath))") }
        sheetFile = workDirectory.appendingPathComponent(name + ".sheet.xml")
        guard FileManager.default.createFile(atPath: sheetFile.path, contents: nil) else { throw IngestionFailure("cannot create a work file for the sheet") }
        let handle = try FileHandle(forWritingTo: sheetFile)
        defer { try? handle.close() }
        do {
            try Self.inflate(archive, sheetEntry, cap: cap) { handle.write($0) }
        } catch {
            try? FileManager.default.removeItem(at: sheetFile)
            throw error
        }
    }

    private static func inflate(_ archive: Archive, _ entry: Entry, cap: Int64, _ body: (Data) throws -> Void) throws {
        if Int64(clamping: entry.uncompressedSize) > cap {
            throw IngestionFailure("the XLSX part \(entry.path) would inflate to \(entry.uncompressedSize) bytes, over the limit of \(cap) bytes (a zip bomb?)")
        }
        var total: Int64 = 0
        do {
            _ = try archive.extract(entry, bufferSize: 1 << 16) { chunk in
                total += Int64(chunk.count)
                if total > cap { throw IngestionFailure("the XLSX part \(entry.path) inflates past the limit of \(cap) bytes (a zip bomb?)") }
                try body(chunk)
            }
        } catch let failure as IngestionFailure {
            throw failure
        } catch {
            throw IngestionFailure("the XLSX file is corrupt: \(entry.path) cannot be inflated (\(error))")
        }
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
    private let data: Data
    private var position = 0
    private var ordinal: Int64 = 0
    private let skip: Int64
    private let width: Int?
    private var lastRow = 0
    /// Merged ranges (rows and columns 1-based, inclusive) whose covered cells take the anchor's value.
    private let merges: [(r0: Int, c0: Int, r1: Int, c1: Int)]
    private var anchors: [Int: (String, Bool)] = [:]

    /// Progress in the archive's bytes (the inflated sheet is larger than the file).
    var bytesConsumed: Int64 { data.isEmpty ? 0 : Int64(Double(position) / Double(data.count) * Double(workbook.archiveSize)) }

    init(workbook: XLSXWorkbook, skipping start: Int64, width: Int?) throws {
        self.workbook = workbook
        data = try Data(contentsOf: workbook.sheetFile, options: .alwaysMapped)
        skip = start
        self.width = width
        // <mergeCells> follows <sheetData>: look for it in the file's tail.
        var found: [(Int, Int, Int, Int)] = []
        data.withUnsafeBytes { raw in
            let all = raw.bindMemory(to: UInt8.self)
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
        while k < s.count, (0x41...0x5A).contains(s[k]) || (0x61...0x7A).contains(s[k]) {
            column = column * 26 + Int((s[k] & 0xDF) - 0x40)
            if column > maxColumn { return nil }
            k += 1
        }
        while k < s.count, (0x30...0x39).contains(s[k]) {
            row = row * 10 + Int(s[k] - 0x30)
            if row > maxRow { return nil }
            k += 1
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
            if let width {
                if row.count < width { row += Array(repeating: nil, count: width - row.count) } else if row.count > width {
                    while row.count > width, row.last.map({ $0 == nil }) == true { row.removeLast() }
                }
            }
            record.reset()
            record.textOnly.removeAll(keepingCapacity: true)
            for cell in row {
                if let (text, isText) = cell {
                    record.appendField(text)
                    record.textOnly.append(isText)
                } else {
                    record.endField()
                    record.textOnly.append(false)
                }
            }
            record.line = lastRowNumber
            record.offset = ordinal
            record.blankBefore = gap
            return true
        }
    }

    private var lastRowNumber = 0
    private var gap = false

    /// The next row with at least one value: (text, is a string) per column, nil for empty.
    private mutating func readRow() throws -> [(String, Bool)?]? {
        let wb = workbook
        let merges = merges
        var anchors = anchors
        defer { self.anchors = anchors }
        return data.withUnsafeBytes { raw -> [(String, Bool)?]? in
            var s = XMLScan(raw.bindMemory(to: UInt8.self))
            s.i = position
            defer { position = s.i }
            var cells: [(String, Bool)?] = []
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
                        if cells.contains(where: { $0 != nil }) {
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

    /// A cell's text and whether it is a string; nil for an empty or error cell.
    static func cell(_ v: [UInt8], type: String, style: Int, workbook: XLSXWorkbook) -> (String, Bool)? {
        let text = String(decoding: v, as: UTF8.self)
        switch type {
        case "s":
            guard let i = Int(text), i >= 0, i < workbook.sharedStrings.count else { return nil }
            return (workbook.sharedStrings[i], true)
        case "inlineStr", "str": return (text, true)
        case "b": return (text == "1" || text.lowercased() == "true" ? "true" : "false", false)
        case "e": return nil
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
        let clock = String(format: "%02d:%02d:%02d", seconds / 3600, seconds / 60 % 60, seconds % 60)
        if kind == 2, days == 0 || (!date1904 && serial < 1) { return clock }
        // Days since 1970-01-01.
        let epoch = date1904 ? 24107 : 25569
        let (y, m, d) = civil(days - epoch)
        let date = String(format: "%04d-%02d-%02d", y, m, d)
        return seconds == 0 ? date : "\(date)T\(clock)"
    }

    static func civil(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
