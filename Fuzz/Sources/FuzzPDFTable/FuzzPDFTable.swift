import Foundation
import FuzzSupport
@testable import LocalStore

/// The PDF table finder (`PDFTableBuilder.rows`) on word boxes decoded from the input, without
/// poppler: far cheaper per input than a PDF, and it reaches layouts no seed PDF has (overlaps,
/// zero-height and inverted boxes, huge coordinates). The input is read in records of 6 bytes:
/// a record whose first byte is 0xFF starts a new page (the next byte its height / 4 points);
/// otherwise x0, y0 (two bytes each, in quarter points), the box's width and height (one byte
/// each, in quarter points, a width ≥ 0xF0 making it inverted or zero), and the word's text is
/// a name from the record's position, so that rows repeat and headers can repeat across pages.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPDFTable(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    var pages: [PDFPageText] = [PDFPageText(words: [], height: 842)]
    var index = 0
    while index + 6 <= input.count {
        let r = input[index..<index + 6].map(Double.init)
        let raw = Array(input[index..<index + 6])
        index += 6
        if raw[0] == 0xFF {
            pages.append(PDFPageText(words: [], height: r[1] * 4))
            continue
        }
        let x0 = (r[0] * 256 + r[1]) / 4
        let y0 = (r[2] * 256 + r[3]) / 4
        let width = raw[4] >= 0xF0 ? -(r[4] - 0xF0) : r[4] / 4
        let height = r[5] / 4
        let text = ["Name", "Amount", "2024-01-01", "12.5", "x", "Total", "-", ""][Int(raw[5] & 0x07)] + (raw[1] & 0x08 != 0 ? String(raw[3] % 5) : "")
        pages[pages.count - 1].words.append(PDFWord(text: text, x0: x0, y0: y0, x1: x0 + width, y1: y0 + height))
    }
    let rows: [[String?]]
    do {
        rows = try PDFTableBuilder.rows(pages)
    } catch {
        return 0
    }
    let words = pages.reduce(0) { $0 + $1.words.count }
    if rows.count > words { violated("\(rows.count) rows from \(words) words") }
    if let first = rows.first, rows.contains(where: { $0.count != first.count }) {
        violated("rows of different widths: \(Set(rows.map(\.count)).sorted())")
    }
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzPDFTable_main")
public func fuzzPDFTableMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzPDFTable)
}
