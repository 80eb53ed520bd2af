/// Serialises JSON straight into a byte buffer. Hot paths (query pages, notifications) write
/// through this instead of JSONEncoder so that key order is kept and no intermediate tree is
/// built.
public struct JSONWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always) public mutating func raw(_ ascii: StaticString) {
        ascii.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    @inline(__always) public mutating func raw(_ other: [UInt8]) {
        bytes.append(contentsOf: other)
    }

    @inline(__always) public mutating func byte(_ b: UInt8) { bytes.append(b) }

    public mutating func null() { raw("null") }
    public mutating func bool(_ b: Bool) { b ? raw("true") : raw("false") }

    public mutating func int(_ i: Int64) {
        if i == 0 { bytes.append(0x30); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var magnitude = i.magnitude
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[count] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
                count += 1
            }
        }
        if i < 0 { bytes.append(0x2D) }
        withUnsafeBytes(of: &digits) { buffer in
            var index = count - 1
            while index >= 0 { bytes.append(buffer[index]); index -= 1 }
        }
    }

    /// Integral doubles within the exactly representable range print without a fraction;
    /// non-finite values have no JSON form and become null.
    public mutating func double(_ d: Double) {
        guard d.isFinite else { null(); return }
        if d == d.rounded(), abs(d) < 9_007_199_254_740_992 {
            int(Int64(d))
        } else {
            bytes.append(contentsOf: Array(d.description.utf8))
        }
    }

    public mutating func string(_ s: String) {
        bytes.append(0x22)
        var s = s
        s.withUTF8 { utf8 in
            var runStart = 0
            for index in 0..<utf8.count {
                let c = utf8[index]
                if c >= 0x20 && c != 0x22 && c != 0x5C { continue }
                if runStart < index { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index])) }
                runStart = index + 1
                switch c {
                case 0x22: raw("\\\"")
                case 0x5C: raw("\\\\")
                case 0x0A: raw("\\n")
                case 0x0D: raw("\\r")
                case 0x09: raw("\\t")
                case 0x08: raw("\\b")
                case 0x0C: raw("\\f")
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    raw("\\u00")
                    bytes.append(hex[Int(c >> 4)])
                    bytes.append(hex[Int(c & 0xF)])
                }
            }
            if runStart < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...])) }
        }
        bytes.append(0x22)
    }

    public mutating func value(_ v: JSONValue) {
        switch v {
        case .null: null()
        case .bool(let b): bool(b)
        case .int(let i): int(i)
        case .double(let d): double(d)
        case .string(let s): string(s)
        case .array(let a):
            byte(0x5B)
            for (index, element) in a.enumerated() {
                if index > 0 { byte(0x2C) }
                value(element)
            }
            byte(0x5D)
        case .object(let o):
            byte(0x7B)
            for (index, entry) in o.entries.enumerated() {
                if index > 0 { byte(0x2C) }
                string(entry.key)
                byte(0x3A)
                value(entry.value)
            }
            byte(0x7D)
        }
    }
}

extension JSONValue {
    public func serialized() -> [UInt8] {
        var writer = JSONWriter()
        writer.value(self)
        return writer.bytes
    }

    public var jsonText: String { String(decoding: serialized(), as: UTF8.self) }
}

extension JSONValue {
    /// Indented JSON for people and for committed files, laid out as Python's
    /// `json.dumps(indent=n)` lays it out.
    public func prettyPrinted(indent: Int = 2) -> [UInt8] {
        var writer = JSONWriter()
        Self.writePretty(self, into: &writer, indent: indent, level: 0)
        return writer.bytes
    }

    private static func writePretty(_ value: JSONValue, into writer: inout JSONWriter, indent: Int, level: Int) {
        func newline(_ level: Int) {
            writer.byte(0x0A)
            writer.raw(Array(repeating: 0x20, count: indent * level))
        }
        switch value {
        case .array(let items) where !items.isEmpty:
            writer.byte(0x5B)
            for (index, item) in items.enumerated() {
                if index > 0 { writer.byte(0x2C) }
                newline(level + 1)
                writePretty(item, into: &writer, indent: indent, level: level + 1)
            }
            newline(level)
            writer.byte(0x5D)
        case .object(let object) where !object.keys.isEmpty:
            writer.byte(0x7B)
            for (index, key) in object.keys.enumerated() {
                if index > 0 { writer.byte(0x2C) }
                newline(level + 1)
                writer.string(key)
                writer.raw(": ")
                writePretty(object[key] ?? .null, into: &writer, indent: indent, level: level + 1)
            }
            newline(level)
            writer.byte(0x7D)
        default:
            writer.value(value)
        }
    }
}
