import FuzzSupport
import IngestFuzzing

/// JSON and JSON Lines uploads: the streaming array scanner (a top-level array or the first
/// array under a key), flattening of nested objects, and the line reader. The input's first
/// byte picks the format (even: JSON, odd: JSON Lines) and, through its other bits, the
/// parse options; the rest is the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONReaders(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let file = scratchFile("upload.json", input.dropFirst())
    ingest(file, contentType: first & 0x01 == 0 ? "application/json" : "application/x-ndjson", options: options(from: first & 0xFC))
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzJSONReaders_main")
public func fuzzJSONReadersMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzJSONReaders, flags: ingestLibFuzzerFlags)
}
