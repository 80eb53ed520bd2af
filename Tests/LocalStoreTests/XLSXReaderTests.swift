import Testing
@testable import LocalStore

@Suite struct XLSXReaderTests {
    @Test func dateFormatsAreRecognised() {
        #expect(XLSXWorkbook.dateKind(id: 14, code: nil) == 1)
        #expect(XLSXWorkbook.dateKind(id: 22, code: nil) == 1)
        #expect(XLSXWorkbook.dateKind(id: 20, code: nil) == 2)
        #expect(XLSXWorkbook.dateKind(id: 46, code: nil) == 2)
        #expect(XLSXWorkbook.dateKind(id: 2, code: nil) == 0)
        #expect(XLSXWorkbook.dateKind(id: 164, code: "dd/mm/yyyy;@") == 1)
        #expect(XLSXWorkbook.dateKind(id: 165, code: "[$-409]mmmm d, yyyy") == 1)
        #expect(XLSXWorkbook.dateKind(id: 166, code: "hh:mm") == 2)
        #expect(XLSXWorkbook.dateKind(id: 167, code: "#,##0.00\" days\"") == 0)
        #expect(XLSXWorkbook.dateKind(id: 168, code: "[Red]0.00") == 0)
        #expect(XLSXWorkbook.dateKind(id: 169, code: "General") == 0)
    }

    @Test func serialsInBothDateSystems() {
        #expect(XLSXReader.formatSerial(1, kind: 1, date1904: false) == "1900-01-01")
        #expect(XLSXReader.formatSerial(59, kind: 1, date1904: false) == "1900-02-28")
        #expect(XLSXReader.formatSerial(61, kind: 1, date1904: false) == "1900-03-01")
        #expect(XLSXReader.formatSerial(45351, kind: 1, date1904: false) == "2024-02-29")
        #expect(XLSXReader.formatSerial(45351.5, kind: 1, date1904: false) == "2024-02-29T12:00:00")
        #expect(XLSXReader.formatSerial(0, kind: 1, date1904: true) == "1904-01-01")
        #expect(XLSXReader.formatSerial(43889, kind: 1, date1904: true) == "2024-02-29")
        #expect(XLSXReader.formatSerial(0.75, kind: 2, date1904: false) == "18:00:00")
    }

    @Test func cellReferences() {
        #expect(XLSXReader.cellRef(Array("C7".utf8))! == (3, 7))
        #expect(XLSXReader.cellRef(Array("AA10".utf8))! == (27, 10))
        #expect(XLSXReader.cellRef(Array("XFD1048576".utf8))! == (16384, 1_048_576))
        // Hostile references are refused, not overflowed.
        #expect(XLSXReader.cellRef(Array(String(repeating: "Z", count: 40).utf8)) == nil)
        #expect(XLSXReader.cellRef(Array(("A" + String(repeating: "9", count: 40)).utf8)) == nil)
        // Found by FuzzXLSX: these overflowed Int and killed the process.
        #expect(XLSXReader.cellRef(Array("AAAAAAAAAAAAAAAAAAAA1".utf8)) == nil)
        #expect(XLSXReader.cellRef(Array(("A" + String(repeating: "9", count: 30)).utf8)) == nil)
    }
}
