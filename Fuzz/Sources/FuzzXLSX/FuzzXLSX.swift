import Foundation
import FuzzSupport
import IngestFuzzing
import ZIPFoundation

/// XLSX uploads. Random bytes rarely make a zip, so the input is the workbook's XML parts
/// separated by NUL bytes — xl/workbook.xml, xl/worksheets/sheet1.xml, xl/sharedStrings.xml,
/// xl/styles.xml, xl/_rels/workbook.xml.rels — stored (uncompressed) into a real archive; an
/// input starting with "PK" is taken as the archive itself, to reach the zip handling too.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXLSX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    let file: URL
    if input.starts(with: [0x50, 0x4B]) {
        file = scratchFile("upload.xlsx", input)
    } else {
        file = scratchDirectory.appendingPathComponent("upload.xlsx")
        let paths = ["xl/workbook.xml", "xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/styles.xml", "xl/_rels/workbook.xml.rels"]
        do {
            let archive = try Archive(url: file, accessMode: .create)
            for (path, part) in zip(paths, input.split(separator: 0, omittingEmptySubsequences: false)) {
                let bytes = Data(part)
                try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(bytes.count), compressionMethod: .none) { position, size in
                    bytes.subdata(in: Int(position)..<Int(position) + size)
                }
            }
        } catch {
            violated("the archive could not be written: \(error)")
        }
    }
    ingest(file, contentType: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzXLSX_main")
public func fuzzXLSXMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzXLSX, flags: ingestLibFuzzerFlags)
}
