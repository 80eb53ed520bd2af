public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "\(reason) at byte \(offset)" }
}

/// A strict RFC 8259 parser over bytes. Written by hand rather than using JSONDecoder so that
/// integers and doubles stay distinct, key order is kept, and nesting depth is bounded (a
/// deeply nested message must fail cleanly, never overflow the stack).
public struct JSONParser {
    public static let maxDepth = 512

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in
            try parse(buffer)
        }
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    public static func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(buffer: buffer)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    /// Parses one value starting at `offset` and returns it with the offset just past it, for
    /// readers that walk a large array element by element.
    public static func parseValue(in buffer: UnsafeBufferPointer<UInt8>, at offset: Int) throws(JSONParseError) -> (JSONValue, Int) {
        var parser = JSONParser(buffer: buffer)
        parser.position = offset
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        return (value, parser.position)
    }

    let buffer: UnsafeBufferPointer<UInt8>
    var position = 0

    init(buffer: UnsafeBufferPointer<UInt8>) { self.buffer = buffer }

    func error(_ reason: String) -> JSONParseError { JSONParseError(offset: position, reason: reason) }

    mutating func skipWhitespace() {
        while position < buffer.count {
            switch buffer[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth)") }
        guard position < buffer.count else { throw error("unexpected end of input") }
        switch buffer[position] {
        case 0x7B: return try parseObject(depth: depth)
        case 0x5B: return try parseArray(depth: depth)
        case 0x22: return .string(try parseString())
        case 0x74: try expectLiteral("true"); return .bool(true)
        case 0x66: try expectLiteral("false"); return .bool(false)
        case 0x6E: try expectLiteral("null"); return .null
        case 0x2D, 0x30...0x39: return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard position + count <= buffer.count else { throw error("unexpected end of input") }
        let matches = literal.withUTF8Buffer { lit in
            (0..<count).allSatisfy { buffer[position + $0] == lit[$0] }
        }
        guard matches else { throw error("invalid literal") }
        position += count
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        position += 1
        var object = JSONObject()
        skipWhitespace()
        if position < buffer.count && buffer[position] == 0x7D { position += 1; return .object(object) }
        while true {
            skipWhitespace()
            guard position < buffer.count, buffer[position] == 0x22 else { throw error("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard position < buffer.count, buffer[position] == 0x3A else { throw error("expected ':'") }
            position += 1
            skipWhitespace()
            let value = try parseValue(depth: depth + 1)
            // Last duplicate wins, as in most parsers.
            if object.count < 16 { object[key] = value } else { object.appendUnique(key, value) }
            skipWhitespace()
            guard position < buffer.count else { throw error("unexpected end of input") }
            if buffer[position] == 0x2C { position += 1; continue }
            if buffer[position] == 0x7D { position += 1; return .object(object) }
            throw error("expected ',' or '}'")
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        position += 1
        var array: [JSONValue] = []
        skipWhitespace()
        if position < buffer.count && buffer[position] == 0x5D { position += 1; return .array(array) }
        while true {
            skipWhitespace()
            array.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard position < buffer.count else { throw error("unexpected end of input") }
            if buffer[position] == 0x2C { position += 1; continue }
            if buffer[position] == 0x5D { position += 1; return .array(array) }
            throw error("expected ',' or ']'")
        }
    }

    mutating func parseString() throws(JSONParseError) -> String {
        position += 1
        let start = position
        // Fast path: no escapes.
        while position < buffer.count {
            let c = buffer[position]
            if c == 0x22 {
                let s = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<position]), as: UTF8.self)
                position += 1
                return s
            }
            if c == 0x5C { break }
            if c < 0x20 { throw error("control character in string") }
            position += 1
        }
        var bytes = Array(buffer[start..<position])
        while position < buffer.count {
            let c = buffer[position]
            switch c {
            case 0x22:
                position += 1
                return String(decoding: bytes, as: UTF8.self)
            case 0x5C:
                position += 1
                guard position < buffer.count else { throw error("unexpected end of input") }
                let e = buffer[position]
                position += 1
                switch e {
                case 0x22: bytes.append(0x22)
                case 0x5C: bytes.append(0x5C)
                case 0x2F: bytes.append(0x2F)
                case 0x62: bytes.append(0x08)
                case 0x66: bytes.append(0x0C)
                case 0x6E: bytes.append(0x0A)
                case 0x72: bytes.append(0x0D)
                case 0x74: bytes.append(0x09)
                case 0x75:
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        if position + 1 < buffer.count, buffer[position] == 0x5C, buffer[position + 1] == 0x75 {
                            position += 2
                            let low = try parseHex4()
                            if (0xDC00...0xDFFF).contains(low) {
                                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                appendScalar(0xFFFD, to: &bytes)
                                scalar = low
                            }
                        } else {
                            scalar = 0xFFFD
                        }
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        scalar = 0xFFFD
                    }
                    appendScalar(scalar, to: &bytes)
                default: throw error("invalid escape")
                }
            default:
                if c < 0x20 { throw error("control character in string") }
                bytes.append(c)
                position += 1
            }
        }
        throw error("unterminated string")
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard position + 4 <= buffer.count else { throw error("unexpected end of input") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = buffer[position]
            let digit: UInt32
            switch c {
            case 0x30...0x39: digit = UInt32(c - 0x30)
            case 0x41...0x46: digit = UInt32(c - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(c - 0x61 + 10)
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    func appendScalar(_ value: UInt32, to bytes: inout [UInt8]) {
        let scalar = Unicode.Scalar(value) ?? "\u{FFFD}"
        bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = position
        var isInteger = true
        if buffer[position] == 0x2D { position += 1 }
        guard position < buffer.count else { throw error("invalid number") }
        if buffer[position] == 0x30 {
            position += 1
        } else if (0x31...0x39).contains(buffer[position]) {
            while position < buffer.count, (0x30...0x39).contains(buffer[position]) { position += 1 }
        } else {
            throw error("invalid number")
        }
        if position < buffer.count, buffer[position] == 0x2E {
            isInteger = false
            position += 1
            let digitsStart = position
            while position < buffer.count, (0x30...0x39).contains(buffer[position]) { position += 1 }
            guard position > digitsStart else { throw error("invalid number") }
        }
        if position < buffer.count, buffer[position] == 0x65 || buffer[position] == 0x45 {
            isInteger = false
            position += 1
            if position < buffer.count, buffer[position] == 0x2B || buffer[position] == 0x2D { position += 1 }
            let digitsStart = position
            while position < buffer.count, (0x30...0x39).contains(buffer[position]) { position += 1 }
            guard position > digitsStart else { throw error("invalid number") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<position]), as: UTF8.self)
        if isInteger, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw error("invalid number") }
        // 1e400 reads as infinity, which no JSON text can carry back (the writer would send
        // null) and which no integer parameter can take: refused as the number it is.
        guard d.isFinite else { throw JSONParseError(offset: start, reason: "number out of range") }
        return .double(d)
    }
}
