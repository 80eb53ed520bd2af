/// Decodes a Decodable straight from a JSONValue, strictly: an integer field accepts only an
/// integral number, a string field only a string, a Bool only true/false. Foundation's
/// JSONDecoder would truncate 2.5 into an Int; parameters must be rejected instead.
public struct JSONValueDecoder {
    /// When set, a key that the decoded type never asked for is an error (`UnknownKeyError`),
    /// except these keys at the top level.
    public var rejectUnknownKeys: Set<String>?

    public init(rejectingUnknownKeysExcept exempt: Set<String>? = nil) {
        rejectUnknownKeys = exempt
    }

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        let audit = rejectUnknownKeys == nil ? nil : KeyAudit()
        let decoded = try T(from: ValueDecoder(value: value, codingPath: [], audit: audit))
        if let audit, let exempt = rejectUnknownKeys { try audit.check(topLevelExempt: exempt) }
        return decoded
    }
}

/// A key in the input that the type being decoded does not have.
public struct UnknownKeyError: Error, Sendable {
    /// The path of the object holding the key (empty at the top level).
    public var path: [String]
    public var key: String
    /// The keys the object may hold, in the type's order.
    public var allowed: [String]
}

/// Records, for every object decoded, the keys the Decodable asked about; whatever else the
/// object holds was not understood.
private final class KeyAudit {
    final class Entry {
        let path: [String]
        let keys: [String]
        var asked: [String] = []
        var acceptsAny = false
        init(path: [String], keys: [String]) { self.path = path; self.keys = keys }
        func ask(_ key: String) { if !asked.contains(key) { asked.append(key) } }
    }
    var entries: [Entry] = []

    func register(path: [any CodingKey], keys: [String]) -> Entry {
        let entry = Entry(path: path.map { $0.intValue.map(String.init) ?? $0.stringValue }, keys: keys)
        entries.append(entry)
        return entry
    }

    func check(topLevelExempt: Set<String>) throws {
        for entry in entries where !entry.acceptsAny {
            for key in entry.keys where !entry.asked.contains(key) {
                if entry.path.isEmpty, topLevelExempt.contains(key) { continue }
                throw UnknownKeyError(path: entry.path, key: key, allowed: entry.asked)
            }
        }
    }
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var audit: KeyAudit? = nil
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw DecodingError.typeMismatch([String: Any].self, .init(codingPath: codingPath, debugDescription: "expected an object"))
        }
        let entry = audit?.register(path: codingPath, keys: object.keys.map { $0 })
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath, audit: audit, entry: entry))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let array) = value else {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "expected an array"))
        }
        return UnkeyedContainer(array: array, codingPath: codingPath, audit: audit)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleContainer(value: value, codingPath: codingPath, audit: audit)
    }
}

private func mismatch(_ type: Any.Type, _ path: [any CodingKey], _ value: JSONValue) -> DecodingError {
    DecodingError.typeMismatch(type, .init(codingPath: path, debugDescription: "found \(value.typeName)"))
}

private func decodeScalar<T: Decodable>(_ type: T.Type, _ value: JSONValue, _ path: [any CodingKey], _ audit: KeyAudit?) throws -> T {
    if value.isNull, !(T.self is JSONValue.Type) {
        throw DecodingError.valueNotFound(type, .init(codingPath: path, debugDescription: "found null"))
    }
    switch type {
    case is String.Type:
        guard case .string(let s) = value else { throw mismatch(type, path, value) }
        return s as! T
    case is Bool.Type:
        guard case .bool(let b) = value else { throw mismatch(type, path, value) }
        return b as! T
    case is Int.Type, is Int64.Type, is Int32.Type:
        let integer: Int64
        switch value {
        case .int(let i): integer = i
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: integer = Int64(d)
        default: throw mismatch(type, path, value)
        }
        if T.self == Int.self { return Int(integer) as! T }
        if T.self == Int32.self {
            guard let small = Int32(exactly: integer) else { throw mismatch(type, path, value) }
            return small as! T
        }
        return integer as! T
    case is Double.Type:
        switch value {
        case .int(let i): return Double(i) as! T
        case .double(let d): return d as! T
        default: throw mismatch(type, path, value)
        }
    case is JSONValue.Type:
        return value as! T
    default:
        return try T(from: ValueDecoder(value: value, codingPath: path, audit: audit))
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]
    let audit: KeyAudit?
    let entry: KeyAudit.Entry?

    var allKeys: [Key] {
        // A type that enumerates the keys (a dictionary) accepts whatever is there.
        entry?.acceptsAny = true
        return object.keys.compactMap { Key(stringValue: $0) }
    }
    func contains(_ key: Key) -> Bool {
        entry?.ask(key.stringValue)
        return object[key.stringValue] != nil
    }

    func value(for key: Key) throws -> JSONValue {
        entry?.ask(key.stringValue)
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        entry?.ask(key.stringValue)
        return object[key.stringValue]?.isNull ?? true
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeScalar(type, try value(for: key), codingPath + [key], audit)
    }

    /// Absent and null both mean "not given" for an optional parameter.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        entry?.ask(key.stringValue)
        guard let value = object[key.stringValue], !value.isNull else { return nil }
        return try decodeScalar(type, value, codingPath + [key], audit)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(value: try value(for: key), codingPath: codingPath + [key], audit: audit).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(value: try value(for: key), codingPath: codingPath + [key], audit: audit).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        entry?.acceptsAny = true
        return ValueDecoder(value: .object(object), codingPath: codingPath, audit: audit)
    }
    func superDecoder(forKey key: Key) throws -> any Decoder {
        entry?.ask(key.stringValue)
        return ValueDecoder(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key], audit: audit)
    }
}

private struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { String(intValue ?? 0) }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let array: [JSONValue]
    let codingPath: [any CodingKey]
    let audit: KeyAudit?
    var currentIndex = 0

    init(array: [JSONValue], codingPath: [any CodingKey], audit: KeyAudit?) {
        self.array = array
        self.codingPath = codingPath
        self.audit = audit
    }

    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    mutating func next() throws -> (JSONValue, [any CodingKey]) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(JSONValue.self, .init(codingPath: codingPath, debugDescription: "array too short"))
        }
        defer { currentIndex += 1 }
        return (array[currentIndex], codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, array[currentIndex].isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (value, path) = try next()
        return try decodeScalar(type, value, path, audit)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (value, path) = try next()
        return try ValueDecoder(value: value, codingPath: path, audit: audit).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (value, path) = try next()
        return try ValueDecoder(value: value, codingPath: path, audit: audit).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (value, path) = try next()
        return ValueDecoder(value: value, codingPath: path, audit: audit)
    }
}

private struct SingleContainer: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]
    let audit: KeyAudit?

    func decodeNil() -> Bool { value.isNull }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeScalar(type, value, codingPath, audit) }
}
