import Foundation

/// A minimal XML tokenizer over bytes: tags with lazily read attributes, and text between them.
/// No DOM is built; callers walk the events they need.
struct XMLScan {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0

    init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

    enum Event { case open(Range<Int>, selfClosing: Bool), close(Range<Int>), text(Range<Int>) }

    /// The next event; nil at the end.
    mutating func next() -> Event? {
        guard i < b.count else { return nil }
        if b[i] != 0x3C {
            let start = i
            while i < b.count, b[i] != 0x3C { i += 1 }
            return .text(start..<i)
        }
        // Comments, declarations, processing instructions: skipped.
        if i + 1 < b.count, b[i + 1] == 0x3F || b[i + 1] == 0x21 {
            if i + 3 < b.count, b[i + 2] == 0x2D, b[i + 3] == 0x2D {
                i += 4
                while i + 2 < b.count, !(b[i] == 0x2D && b[i + 1] == 0x2D && b[i + 2] == 0x3E) { i += 1 }
                i = min(b.count, i + 3)
            } else {
                while i < b.count, b[i] != 0x3E { i += 1 }
                i = min(b.count, i + 1)
            }
            return next()
        }
        let start = i + 1
        var quote: UInt8 = 0
        i += 1
        while i < b.count {
            let c = b[i]
            if quote != 0 { if c == quote { quote = 0 } } else if c == 0x22 || c == 0x27 { quote = c } else if c == 0x3E { break }
            i += 1
        }
        let end = min(i, b.count)
        i = min(b.count, i + 1)
        if start < end, b[start] == 0x2F { return .close((start + 1)..<end) }
        if end > start, b[end - 1] == 0x2F { return .open(start..<(end - 1), selfClosing: true) }
        return .open(start..<end, selfClosing: false)
    }

    /// The tag's local name (without a namespace prefix).
    func name(_ tag: Range<Int>) -> Substring.UTF8View.SubSequence {
        var end = tag.lowerBound
        while end < tag.upperBound, !Self.isSpace(b[end]) { end += 1 }
        var start = tag.lowerBound
        for k in tag.lowerBound..<end where b[k] == 0x3A { start = k + 1 }
        return Substring(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self).utf8[...]
    }

    func isName(_ tag: Range<Int>, _ local: StaticString) -> Bool {
        var end = tag.lowerBound
        while end < tag.upperBound, !Self.isSpace(b[end]) { end += 1 }
        var start = tag.lowerBound
        for k in tag.lowerBound..<end where b[k] == 0x3A { start = k + 1 }
        let n = local.utf8CodeUnitCount
        guard end - start == n else { return false }
        let p = local.utf8Start
        for k in 0..<n where b[start + k] != p[k] { return false }
        return true
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }

    /// Calls `body` with each attribute's qualified name (`office:value-type`) and raw value
    /// range, in document order.
    func forEachAttribute(_ tag: Range<Int>, _ body: (_ name: Range<Int>, _ value: Range<Int>) -> Void) {
        var k = tag.lowerBound
        while k < tag.upperBound, !Self.isSpace(b[k]) { k += 1 }
        while k < tag.upperBound {
            while k < tag.upperBound, Self.isSpace(b[k]) { k += 1 }
            let nameStart = k
            while k < tag.upperBound, b[k] != 0x3D, !Self.isSpace(b[k]) { k += 1 }
            let nameEnd = k
            while k < tag.upperBound, b[k] != 0x22, b[k] != 0x27 { k += 1 }
            guard k < tag.upperBound else { return }
            let q = b[k]
            k += 1
            let valueStart = k
            while k < tag.upperBound, b[k] != q { k += 1 }
            let valueEnd = min(k, tag.upperBound)
            k += 1
            body(nameStart..<nameEnd, valueStart..<valueEnd)
        }
    }

    func equals(_ range: Range<Int>, _ text: StaticString) -> Bool {
        let n = text.utf8CodeUnitCount
        guard range.count == n else { return false }
        let p = text.utf8Start
        for k in 0..<n where b[range.lowerBound + k] != p[k] { return false }
        return true
    }

    /// The text of a range with XML entities decoded.
    func decoded(_ range: Range<Int>) -> String {
        var out: [UInt8] = []
        Self.decode(UnsafeBufferPointer(rebasing: b[range]), into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of an attribute (matched on its local name), entities decoded.
    func attribute(_ tag: Range<Int>, _ local: String) -> String? {
        let want = Array(local.utf8)
        var found: Range<Int>?
        forEachAttribute(tag) { name, value in
            guard found == nil else { return }
            var localStart = name.lowerBound
            for m in name where b[m] == 0x3A { localStart = m + 1 }
            if name.upperBound - localStart == want.count, zip(b[localStart..<name.upperBound], want).allSatisfy({ $0 == $1 }) {
                found = value
            }
        }
        return found.map(decoded)
    }

    /// Appends text with XML entities decoded.
    static func decode(_ t: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var k = 0
        while k < t.count {
            let c = t[k]
            guard c == 0x26 else { out.append(c); k += 1; continue }
            var e = k + 1
            while e < t.count, e - k < 12, t[e] != 0x3B { e += 1 }
            guard e < t.count, t[e] == 0x3B else { out.append(c); k += 1; continue }
            let name = String(decoding: UnsafeBufferPointer(rebasing: t[(k + 1)..<e]), as: UTF8.self)
            switch name {
            case "amp": out.append(0x26)
            case "lt": out.append(0x3C)
            case "gt": out.append(0x3E)
            case "quot": out.append(0x22)
            case "apos": out.append(0x27)
            default:
                var scalar: UInt32?
                if name.hasPrefix("#x") || name.hasPrefix("#X") { scalar = UInt32(name.dropFirst(2), radix: 16) } else if name.hasPrefix("#") { scalar = UInt32(name.dropFirst()) }
                if let s = scalar, let u = Unicode.Scalar(s) { out.append(contentsOf: Array(String(Character(u)).utf8)) } else { out.append(contentsOf: Array(t[k...e])) }
            }
            k = e + 1
        }
    }
}
