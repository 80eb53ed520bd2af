import Foundation
import FuzzSupport
import IngestFuzzing
import ZIPFoundation

/// ODS uploads. As for FuzzXLSX, random bytes rarely make a zip: the input is `content.xml`
/// and, after a NUL byte, `META-INF/manifest.xml`, stored (uncompressed) into a real archive
/// whose first entry is the uncompressed `mimetype`, as OpenDocument requires; an input
/// starting with "PK" is taken as the archive itself, to reach the zip handling too.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzODS(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    let file: URL
    if input.starts(with: [0x50, 0x4B]) {
        file = scratchFile("upload.ods", input)
    } else {
        file = scratchDirectory.appendingPathComponent("upload.ods")
        let mimetype = Data("application/vnd.oasis.opendocument.spreadsheet".utf8)
        let parts = [("mimetype", mimetype)]
            + zip(["content.xml", "META-INF/manifest.xml"], input.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)).map { ($0, Data($1)) }
        do {
            let archive = try Archive(url: file, accessMode: .create)
            for (path, bytes) in parts {
                try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(bytes.count), compressionMethod: .none) { position, size in
                    bytes.subdata(in: Int(position)..<Int(position) + size)
                }
            }
        } catch {
            violated("the archive could not be written: \(error)")
        }
    }
    ingest(file, contentType: "application/vnd.oasis.opendocument.spreadsheet")
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzODS_main")
public func fuzzODSMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    // A few-KB input can still load 32,768 rows (IngestFuzzing's RowCap), seconds under
    // AddressSanitizer; scaling libFuzzer's schedule by execution time picks such inputs
    // less often than quick ones.
    runLibFuzzer(argc, argv, fuzzODS, flags: ingestLibFuzzerFlags + ["-entropic_scale_per_exec_time=1"])
}
