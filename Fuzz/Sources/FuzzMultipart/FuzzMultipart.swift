import FuzzSupport
@testable import RESTFace

/// The REST face's upload parsing: the Content-Type header (the input's first line) and the
/// multipart body (the rest). Any bytes must be refused or parsed without crashing; events
/// must nest (bytes only inside a part); and the parts must not depend on how the body was
/// split into reads (it arrives in whatever pieces the network delivers).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultipart(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    let newline = input.firstIndex(of: 0x0A) ?? input.count
    let contentType = String(decoding: input[..<newline], as: UTF8.self)
    let body = Array(input[min(input.count, newline + 1)...])
    guard let boundary = MultipartParser.boundary(contentType: contentType) else { return 0 }
    let whole = parts(body, boundary: boundary, chunk: max(1, body.count))
    // The read size comes from the input so that libFuzzer explores the splits as well.
    let chunk = 1 + Int(input.last ?? 0) % 97
    let pieces = parts(body, boundary: boundary, chunk: chunk)
    if let whole, let pieces, whole != pieces {
        violated("parts differ between one read and reads of \(chunk) bytes: \(whole) vs \(pieces)")
    }
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzMultipart_main")
public func fuzzMultipartMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzMultipart)
}

struct Part: Equatable {
    var name: String?
    var fileName: String?
    var contentType: String?
    var bytes: [UInt8] = []
}

/// The parts of `body` fed in reads of `chunk` bytes; nil when the parser refuses the body.
func parts(_ body: [UInt8], boundary: String, chunk: Int) -> [Part]? {
    var parser = MultipartParser(boundary: boundary)
    var parts: [Part] = []
    var open = false
    do {
        var index = 0
        while index < body.count {
            let end = min(body.count, index + chunk)
            try parser.feed(body[index..<end]) { event in
                switch event {
                case .begin(let headers):
                    if open { violated("a part began inside another") }
                    open = true
                    parts.append(Part(name: headers.name, fileName: headers.fileName, contentType: headers.contentType))
                case .bytes(let slice):
                    if !open { violated("bytes outside a part") }
                    parts[parts.count - 1].bytes += slice
                case .end:
                    if !open { violated("a part ended that had not begun") }
                    open = false
                }
            }
            index = end
        }
        try parser.finish()
    } catch {
        return nil
    }
    if open { violated("the body finished with a part still open") }
    return parts
}
