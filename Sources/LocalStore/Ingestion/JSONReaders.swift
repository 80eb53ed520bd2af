import Foundation
import JSONKit

/// Turns one JSON object into a flat row: nested objects become dotted names
/// (`address.city`), arrays are kept as JSON text.
enum JSONFlattening {
    static func flatten(_ object: JSONObject, prefix: String = "", into row: inout [(String, JSONValue)]) {
        for (key, value) in object {
            let name = prefix.isEmpty ? key : "\(prefix).\(key)"
            if case .object(let nested) = value, !nested.entries.isEmpty {
                flatten(nested, prefix: name, into: &row)
            } else {
                row.append((name, value))
            }
        }
    }

    /// The text a cell holds for a JSON value; the cleaning rules then type it like any cell.
    static func cellText(_ value: JSONValue) -> String {
        switch value {
        case .null: ""
        case .string(let s): s
        case .bool(let b): b ? "true" : "false"
        case .int, .double, .array, .object: value.jsonText
        }
    }
}

/// Column names in order of first appearance across every object of a JSON source.
struct ColumnCollector {
    private(set) var names: [String] = []
    private var index: [String: Int] = [:]

    mutating func add(_ name: String) -> Int {
        if let i = index[name] { return i }
        index[name] = names.count
        names.append(name)
        return names.count - 1
    }

    func position(of name: String) -> Int? { index[name] }
}

/// A JSON document whose top level is an array of objects (or one object, or an object with
/// exactly one array of objects inside, as APIs often wrap their rows). The file is mapped,
/// and elements are parsed one at a time.
struct JSONArrayReader: RecordReader {
    private let data: Data
    private var offset: Int
    private let arrayMode: Bool
    private var finished = false
    private var elementIndex = 0
    let declaredColumns: [String]?
    private let columns: ColumnCollector

    var bytesConsumed: Int64 { Int64(offset) }

    init(url: URL, skipping prefix: Int) throws {
        data = try Data(contentsOf: url, options: .alwaysMapped)
        var start = prefix
        let (isArray, begin) = try data.withUnsafeBytes { raw throws -> (Bool, Int) in
            let b = raw.bindMemory(to: UInt8.self)
            while start < b.count, CellParsing.isSpace(b[start]) { start += 1 }
            guard start < b.count else { throw IngestionFailure("the JSON file is empty") }
            switch b[start] {
            case 0x5B: return (true, start + 1)
            case 0x7B:
                // `{"data": [...]}`: use the single array of objects inside, if there is one.
                let parsed: JSONValue
                do {
                    parsed = try JSONParser.parseValue(in: b, at: start).0
                } catch let error as JSONParseError {
                    throw IngestionFailure("invalid JSON: \(error.reason) at byte \(error.offset)")
                }
                if case .object(let object) = parsed {
                    let arrays = object.entries.filter { if case .array(let a) = $0.value, a.contains(where: { $0.objectValue != nil }) { true } else { false } }
                    if arrays.count == 1, let inner = Self.findArrayStart(in: b, from: start, key: arrays[0].key) {
                        return (true, inner)
                    }
                }
                return (false, start)
            default:
                throw IngestionFailure("the JSON top level must be an array of objects")
            }
        }
        arrayMode = isArray
        offset = begin
        // First pass: every column name, in order of first appearance.
        var collector = ColumnCollector()
        var scan = Scanner(data: data, offset: begin, arrayMode: isArray)
        while let element = try? scan.nextElement() {
            if case .object(let object) = element {
                var row: [(String, JSONValue)] = []
                JSONFlattening.flatten(object, into: &row)
                for (name, _) in row { _ = collector.add(name) }
            }
        }
        columns = collector
        declaredColumns = collector.names
    }

    private static func findArrayStart(in b: UnsafeBufferPointer<UInt8>, from start: Int, key: String) -> Int? {
        // Find `"key"` followed by `:` and `[` at the top level of the object.
        var depth = 0
        var i = start
        let keyBytes = Array("\"\(key)\"".utf8)
        while i < b.count {
            let c = b[i]
            if c == 0x22 {
                if depth == 1, i + keyBytes.count <= b.count, Array(b[i..<(i + keyBytes.count)]) == keyBytes {
                    var j = i + keyBytes.count
                    while j < b.count, CellParsing.isSpace(b[j]) { j += 1 }
                    if j < b.count, b[j] == 0x3A {
                        j += 1
                        while j < b.count, CellParsing.isSpace(b[j]) { j += 1 }
                        if j < b.count, b[j] == 0x5B { return j + 1 }
                    }
                }
                i += 1
                while i < b.count, b[i] != 0x22 { i += b[i] == 0x5C ? 2 : 1 }
            } else if c == 0x7B || c == 0x5B {
                depth += 1
            } else if c == 0x7D || c == 0x5D {
                depth -= 1
            }
            i += 1
        }
        return nil
    }

    /// Walks the elements of the top-level array.
    struct Scanner {
        let data: Data
        var offset: Int
        let arrayMode: Bool
        var done = false

        init(data: Data, offset: Int, arrayMode: Bool) {
            self.data = data
            self.offset = offset
            self.arrayMode = arrayMode
        }

        /// The next element; nil at the end; throws at malformed JSON (position in the error).
        mutating func nextElement() throws -> JSONValue? {
            guard !done else { return nil }
            return try data.withUnsafeBytes { raw -> JSONValue? in
                let b = raw.bindMemory(to: UInt8.self)
                if !arrayMode {
                    done = true
                    let (value, end) = try JSONParser.parseValue(in: b, at: offset)
                    offset = end
                    return value
                }
                while offset < b.count, CellParsing.isSpace(b[offset]) { offset += 1 }
                guard offset < b.count else {
                    done = true
                    throw IngestionFailure("the JSON array is not closed (truncated file?)")
                }
                if b[offset] == 0x5D {
                    done = true
                    return nil
                }
                let (value, end) = try JSONParser.parseValue(in: b, at: offset)
                offset = end
                while offset < b.count, CellParsing.isSpace(b[offset]) { offset += 1 }
                if offset < b.count, b[offset] == 0x2C {
                    offset += 1
                } else if offset < b.count, b[offset] == 0x5D {
                    // The closing bracket is consumed on the next call.
                } else {
                    done = true
                    if offset >= b.count { throw IngestionFailure("the JSON array is not closed (truncated file?)") }
                    throw IngestionFailure("expected ',' or ']' at byte \(offset)")
                }
                return value
            }
        }
    }

    private lazy var scanner = Scanner(data: data, offset: offset, arrayMode: arrayMode)

    mutating func next(into record: inout Record) throws -> Bool {
        record.reset()
        guard !finished else { return false }
        let element: JSONValue?
        do {
            element = try scanner.nextElement()
        } catch let error as JSONParseError {
            finished = true
            record.problem = "invalid JSON: \(error.reason) at byte \(error.offset)"
            record.line = elementIndex + 1
            return true
        } catch let error as IngestionFailure {
            finished = true
            record.problem = error.message
            record.line = elementIndex + 1
            return true
        }
        offset = scanner.offset
        guard let element else {
            finished = true
            return false
        }
        elementIndex += 1
        record.line = elementIndex
        guard case .object(let object) = element else {
            record.problem = "element \(elementIndex) is a \(element.typeName), not an object"
            return true
        }
        fill(&record, from: object, columns: columns)
        return true
    }
}

func fill(_ record: inout Record, from object: JSONObject, columns: ColumnCollector) {
    var row: [(String, JSONValue)] = []
    JSONFlattening.flatten(object, into: &row)
    var cells = [String](repeating: "", count: columns.names.count)
    for (name, value) in row {
        if let position = columns.position(of: name) { cells[position] = JSONFlattening.cellText(value) }
    }
    var textOnly = [Bool](repeating: false, count: columns.names.count)
    for (name, value) in row {
        if case .string = value, let position = columns.position(of: name) { textOnly[position] = true }
    }
    for cell in cells { record.appendField(cell) }
    record.textOnly = textOnly
}

/// JSON Lines: one object per line; blank lines skipped; a line that is not an object is an
/// error for that row only.
struct JSONLinesReader: RecordReader {
    private var lines: DelimitedReader
    private var line = Record()
    let declaredColumns: [String]?
    private let columns: ColumnCollector

    var bytesConsumed: Int64 { lines.bytesConsumed }

    init(url: URL, latin1: Bool, skipping prefix: Int) throws {
        var scan = try DelimitedReader(url: url, dialect: .lines, latin1: latin1, skipping: prefix)
        var collector = ColumnCollector()
        var record = Record()
        while try scan.next(into: &record) {
            guard let value = try? record.bytes.withUnsafeBufferPointer({ try JSONParser.parse($0) }),
                case .object(let object) = value
            else { continue }
            var row: [(String, JSONValue)] = []
            JSONFlattening.flatten(object, into: &row)
            for (name, _) in row { _ = collector.add(name) }
        }
        columns = collector
        declaredColumns = collector.names
        lines = try DelimitedReader(url: url, dialect: .lines, latin1: latin1, skipping: prefix)
    }

    mutating func next(into record: inout Record) throws -> Bool {
        record.reset()
        guard try lines.next(into: &line) else { return false }
        record.line = line.line
        let parsed: JSONValue
        do {
            parsed = try line.bytes.withUnsafeBufferPointer { try JSONParser.parse($0) }
        } catch let error as JSONParseError {
            record.problem = "invalid JSON: \(error.reason) at byte \(error.offset) of the line"
            return true
        }
        guard case .object(let object) = parsed else {
            record.problem = "the line holds a \(parsed.typeName), not an object"
            return true
        }
        fill(&record, from: object, columns: columns)
        return true
    }
}
