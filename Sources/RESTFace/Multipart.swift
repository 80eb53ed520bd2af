/// A streaming `multipart/form-data` parser (RFC 7578): bytes go in as they arrive, parts come
/// out as a header event, body slices and an end event, so a large file never sits in memory.
struct MultipartParser {
    struct PartHeaders {
        var name: String?
        var fileName: String?
        var contentType: String?
    }

    enum Event {
        case begin(PartHeaders)
        case bytes(ArraySlice<UInt8>)
        case end
    }

    enum Failure: Error, CustomStringConvertible {
        case malformed(String)
        var description: String {
            switch self { case .malformed(let reason): reason }
        }
    }

    private enum State { case preamble, afterDelimiter, headers, body, done }

    /// `\r\n--boundary`: a virtual CRLF starts the stream so that the first one matches too.
    private let delimiter: [UInt8]
    private var buffer: [UInt8] = [0x0D, 0x0A]
    private var state = State.preamble
    static let maxHeaderBytes = 16 * 1024

    init(boundary: String) {
        delimiter = Array("\r\n--\(boundary)".utf8)
    }

    var isDone: Bool { state == .done }

    /// The boundary of a `multipart/form-data` Content-Type, if it is one.
    static func boundary(contentType: String) -> String? {
        let parts = splitParameters(contentType)
        guard let type = parts.first, type.lowercased() == "multipart/form-data" else { return nil }
        for part in parts.dropFirst() {
            let (key, value) = keyValue(part)
            if key.lowercased() == "boundary", !value.isEmpty, value.utf8.count <= 70 { return value }
        }
        return nil
    }

    mutating func feed(_ bytes: some Sequence<UInt8>, emit: (Event) throws -> Void) throws {
        buffer.append(contentsOf: bytes)
        while true {
            switch state {
            case .done:
                buffer.removeAll()
                return
            case .preamble:
                guard let index = find(delimiter, in: buffer) else {
                    keepTail()
                    return
                }
                buffer.removeFirst(index + delimiter.count)
                state = .afterDelimiter
            case .afterDelimiter:
                guard buffer.count >= 2 else { return }
                if buffer[0] == UInt8(ascii: "-"), buffer[1] == UInt8(ascii: "-") {
                    state = .done
                    continue
                }
                // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
                guard let crlf = find([0x0D, 0x0A], in: buffer) else {
                    if buffer.count > 1024 { throw Failure.malformed("a boundary line is not followed by a line break") }
                    return
                }
                guard buffer[..<crlf].allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else {
                    throw Failure.malformed("a boundary line has trailing characters")
                }
                buffer.removeFirst(crlf + 2)
                state = .headers
            case .headers:
                if buffer.count >= 2, buffer[0] == 0x0D, buffer[1] == 0x0A {
                    buffer.removeFirst(2)
                    try emit(.begin(PartHeaders()))
                    state = .body
                    continue
                }
                guard let end = find([0x0D, 0x0A, 0x0D, 0x0A], in: buffer) else {
                    if buffer.count > Self.maxHeaderBytes { throw Failure.malformed("a part's headers exceed \(Self.maxHeaderBytes) bytes") }
                    return
                }
                let headers = Self.parseHeaders(String(decoding: buffer[..<end], as: UTF8.self))
                buffer.removeFirst(end + 4)
                try emit(.begin(headers))
                state = .body
            case .body:
                if let index = find(delimiter, in: buffer) {
                    if index > 0 { try emit(.bytes(buffer[..<index])) }
                    try emit(.end)
                    buffer.removeFirst(index + delimiter.count)
                    state = .afterDelimiter
                    continue
                }
                let safe = buffer.count - (delimiter.count - 1)
                if safe > 0 {
                    try emit(.bytes(buffer[..<safe]))
                    buffer.removeFirst(safe)
                }
                return
            }
        }
    }

    /// After the last byte: the closing delimiter must have been seen.
    func finish() throws {
        guard state == .done else { throw Failure.malformed("the body ends before the closing boundary") }
    }

    private mutating func keepTail() {
        let keep = delimiter.count - 1
        if buffer.count > keep { buffer.removeFirst(buffer.count - keep) }
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        let last = haystack.count - needle.count
        var index = 0
        while index <= last {
            if haystack[index] == first {
                var match = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }

    static func parseHeaders(_ text: String) -> PartHeaders {
        var headers = PartHeaders()
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingWhitespace().lowercased()
            let value = line[line.index(after: colon)...].trimmingWhitespace()
            switch name {
            case "content-disposition":
                for part in splitParameters(value).dropFirst() {
                    let (key, parameter) = keyValue(part)
                    switch key.lowercased() {
                    case "name": headers.name = parameter
                    case "filename": headers.fileName = headers.fileName ?? parameter
                    case "filename*":
                        // RFC 5987: charset'language'percent-encoded; UTF-8 only.
                        let pieces = parameter.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                        if pieces.count == 3, pieces[0].lowercased() == "utf-8", let decoded = String(pieces[2]).removingPercentEncodingUTF8() {
                            headers.fileName = decoded
                        }
                    default: break
                    }
                }
            case "content-type":
                headers.contentType = value
            default:
                break
            }
        }
        return headers
    }

    /// `a; b=c; d="e;f"` → `["a", "b=c", "d=\"e;f\""]`, semicolons inside quotes kept.
    static func splitParameters(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
                continue
            }
            switch character {
            case "\\" where quoted:
                current.append(character)
                escaped = true
            case "\"":
                quoted.toggle()
                current.append(character)
            case ";" where !quoted:
                parts.append(current.trimmingWhitespace())
                current = ""
            default:
                current.append(character)
            }
        }
        parts.append(current.trimmingWhitespace())
        return parts.filter { !$0.isEmpty }
    }

    /// `key=value` or `key="quoted \" value"`.
    static func keyValue(_ part: String) -> (String, String) {
        guard let equals = part.firstIndex(of: "=") else { return (part, "") }
        let key = part[..<equals].trimmingWhitespace()
        var value = part[part.index(after: equals)...].trimmingWhitespace()
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
            var unquoted = ""
            var escaped = false
            for character in value.dropFirst().dropLast() {
                if escaped {
                    unquoted.append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else {
                    unquoted.append(character)
                }
            }
            value = unquoted
        }
        return (key, value)
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }
}

extension String {
    /// Percent-decoding that fails on a malformed escape or bytes that are not UTF-8.
    func removingPercentEncodingUTF8() -> String? {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                      let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
