/// How messages are delimited on the stream. Chosen once, from the first byte the client
/// sends, and used for every answer.
public enum Framing: Sendable, Equatable {
    /// LSP base protocol: `Content-Length` headers, a blank line, then the body.
    case contentLength
    /// One JSON message per line.
    case newlineDelimited

    public func frame(_ body: [UInt8]) -> [UInt8] {
        switch self {
        case .contentLength:
            var out = Array("Content-Length: \(body.count)\r\n\r\n".utf8)
            out.append(contentsOf: body)
            return out
        case .newlineDelimited:
            var out = body
            out.append(0x0A)
            return out
        }
    }
}

/// What the framer pulled out of the byte stream.
public enum FramedEvent: Sendable, Equatable {
    case message([UInt8])
    /// A message longer than the cap; its bytes were skipped, never held.
    case oversized(declaredBytes: Int?)
    /// A header block that could not be understood; the block was dropped.
    case malformedHeader(String)
}

/// Splits an incoming byte stream into messages. Bytes arrive in arbitrary pieces: one
/// message may span many reads and one read may hold many messages.
public struct MessageFramer: Sendable {
    public let maxMessageBytes: Int
    static let maxHeaderBytes = 16 * 1024

    public private(set) var framing: Framing?
    private var buffer: [UInt8] = []
    private var state: State = .header

    private enum State: Sendable, Equatable {
        case header
        case body(length: Int)
        case skipBody(remaining: Int)
        case skipLine
    }

    public init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    public mutating func consume(_ chunk: UnsafeBufferPointer<UInt8>) -> [FramedEvent] {
        var events: [FramedEvent] = []
        var input = chunk[...]
        if framing == nil {
            // Whitespace before the first message carries no framing information.
            while let first = input.first, first == 0x20 || first == 0x09 || first == 0x0A || first == 0x0D {
                input = input.dropFirst()
            }
            guard let first = input.first else { return events }
            framing = (first == 0x43 || first == 0x63) ? .contentLength : .newlineDelimited
        }
        switch framing! {
        case .contentLength: consumeContentLength(input, into: &events)
        case .newlineDelimited: consumeLines(input, into: &events)
        }
        return events
    }

    private mutating func consumeLines(_ input: Slice<UnsafeBufferPointer<UInt8>>, into events: inout [FramedEvent]) {
        var input = input
        while !input.isEmpty {
            if state == .skipLine {
                guard let newline = input.firstIndex(of: 0x0A) else { return }
                input = input[(newline + 1)...]
                state = .header
                continue
            }
            guard let newline = input.firstIndex(of: 0x0A) else {
                if buffer.count + input.count > maxMessageBytes {
                    buffer.removeAll(keepingCapacity: false)
                    state = .skipLine
                    events.append(.oversized(declaredBytes: nil))
                } else {
                    buffer.append(contentsOf: input)
                }
                return
            }
            let lineLength = buffer.count + (newline - input.startIndex)
            if lineLength > maxMessageBytes {
                buffer.removeAll(keepingCapacity: false)
                events.append(.oversized(declaredBytes: lineLength))
            } else {
                buffer.append(contentsOf: input[..<newline])
                if buffer.last == 0x0D { buffer.removeLast() }
                if buffer.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) {
                    events.append(.message(buffer))
                }
                buffer.removeAll(keepingCapacity: true)
            }
            input = input[(newline + 1)...]
        }
    }

    private mutating func consumeContentLength(_ chunk: Slice<UnsafeBufferPointer<UInt8>>, into events: inout [FramedEvent]) {
        var data = Array(chunk)
        var index = 0
        while index < data.count {
            switch state {
            case .header:
                // Header blocks are small, so scanning a copy of at most the header cap is cheap.
                let scanFrom = max(0, buffer.count - 3)
                buffer.append(contentsOf: data[index...])
                index = data.count
                guard let end = headerEnd(from: scanFrom) else {
                    if buffer.count > Self.maxHeaderBytes {
                        buffer.removeAll(keepingCapacity: false)
                        events.append(.malformedHeader("header block longer than \(Self.maxHeaderBytes) bytes"))
                    }
                    continue
                }
                let headerBytes = Array(buffer[..<end.headerEnd])
                let rest = Array(buffer[end.bodyStart...])
                buffer.removeAll(keepingCapacity: true)
                let parsed = parseHeaders(headerBytes)
                if end.bodyStart > Self.maxHeaderBytes {
                    // The cap holds however the block arrived; its body is skipped when its
                    // length is known, so the stream stays in step.
                    events.append(.malformedHeader("header block longer than \(Self.maxHeaderBytes) bytes"))
                    if case .success(let length) = parsed { state = .skipBody(remaining: length) }
                    data = rest
                    index = 0
                    continue
                }
                switch parsed {
                case .success(let length):
                    if length > maxMessageBytes {
                        events.append(.oversized(declaredBytes: length))
                        state = .skipBody(remaining: length)
                    } else {
                        state = .body(length: length)
                    }
                case .failure(let error):
                    events.append(.malformedHeader(error.reason))
                }
                // Whatever followed the header block is fed through the state machine again.
                data = rest
                index = 0
            case .body(let length):
                let take = min(length - buffer.count, data.count - index)
                buffer.append(contentsOf: data[index..<(index + take)])
                index += take
                if buffer.count == length {
                    events.append(.message(buffer))
                    buffer.removeAll(keepingCapacity: true)
                    state = .header
                }
            case .skipBody(let remaining):
                let take = min(remaining, data.count - index)
                index += take
                state = remaining - take == 0 ? .header : .skipBody(remaining: remaining - take)
            case .skipLine:
                state = .header
            }
        }
        if case .body(let length) = state, length == 0 {
            events.append(.message([]))
            state = .header
        }
    }

    /// Finds the blank line that ends a header block; a bare `\n\n` is accepted too.
    private func headerEnd(from start: Int) -> (headerEnd: Int, bodyStart: Int)? {
        var index = start
        while index < buffer.count {
            if buffer[index] == 0x0A {
                if index + 1 < buffer.count, buffer[index + 1] == 0x0A { return (index, index + 2) }
                if index + 2 < buffer.count, buffer[index + 1] == 0x0D, buffer[index + 2] == 0x0A {
                    return (index, index + 3)
                }
            }
            index += 1
        }
        return nil
    }

    private func parseHeaders(_ bytes: [UInt8]) -> Result<Int, HeaderError> {
        let text = String(decoding: bytes, as: UTF8.self)
        var length: Int?
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            let line = rawLine.trimmingCharacters(in: " \t\r")
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: ":") else {
                return .failure(HeaderError(reason: "header line without ':': \(line.prefix(80))"))
            }
            let name = line[..<colon].trimmingCharacters(in: " \t").lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            if name == "content-length" {
                guard length == nil else {
                    return .failure(HeaderError(reason: "duplicate Content-Length header"))
                }
                guard !value.isEmpty, value.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(value) else {
                    return .failure(HeaderError(reason: "invalid Content-Length: \(value.prefix(40))"))
                }
                length = n
            }
            // Content-Type and any other header are accepted and ignored.
        }
        guard let length else { return .failure(HeaderError(reason: "missing Content-Length header")) }
        return .success(length)
    }
}

struct HeaderError: Error { var reason: String }

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
