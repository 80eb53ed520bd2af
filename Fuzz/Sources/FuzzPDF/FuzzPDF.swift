import Foundation
import FuzzSupport
import IngestFuzzing

/// PDF uploads: the input is the file, through the whole pipeline. No helper process is set
/// (`PDFReaderProcess.useHelper` is never called), so poppler reads the words in this process,
/// where AddressSanitizer sees them; the agent itself reads PDFs in a helper process.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPDF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    ingest(scratchFile("upload.pdf", bytes(data, size)), contentType: "application/pdf")
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzPDF_main")
public func fuzzPDFMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzPDF, flags: ingestLibFuzzerFlags)
}
