import FuzzSupport
import IngestFuzzing

/// CSV/TSV uploads: encoding and dialect detection, the delimited reader (quotes, stray quotes,
/// ragged rows), header detection, type inference and cleaning. The input's first byte picks
/// the parse options (IngestFuzzing.options(from:)); the rest is the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDelimited(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let file = scratchFile("upload.csv", input.dropFirst())
    ingest(file, contentType: first & 0x01 == 0 ? "text/csv" : "text/plain", options: options(from: first))
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzDelimited_main")
public func fuzzDelimitedMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzDelimited, flags: ingestLibFuzzerFlags)
}
