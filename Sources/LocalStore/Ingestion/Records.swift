import Foundation

/// One record as a reader produced it: the fields' bytes back to back, with their ends.
/// Reused from row to row so that reading allocates nothing per field.
struct Record {
    var bytes: [UInt8] = []
    var ends: [Int] = []
    /// The 1-based line of the source where the record starts.
    var line = 0
    /// The byte offset in the source where the record starts (delimited text only).
    var offset: Int64 = 0
    /// Whether one or more blank lines came just before the record (delimited text only).
    var blankBefore = false
    /// Whether a stray quote was read as text to give the record the table's width.
    var repaired = false
    /// Why the record could not be read whole; such a record is counted as an error and skipped.
    var problem: String?
    /// Per field, whether the source typed it as text (a JSON string): such a value is never
    /// read as a number or a boolean. Empty for formats without types.
    var textOnly: [Bool] = []
    /// Per-field findings of the reader that the pipeline records as warnings on the field's
    /// column (a spreadsheet's error cell, read as null). Usually empty.
    var fieldNotes: [FieldNote] = []

    struct FieldNote: Equatable {
        var field: Int
        var kind: String
        var reason: String
    }

    func isTextOnly(_ index: Int) -> Bool { index < textOnly.count && textOnly[index] }

    var fieldCount: Int { ends.count }

    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        problem = nil
        repaired = false
        if !textOnly.isEmpty { textOnly.removeAll(keepingCapacity: true) }
        if !fieldNotes.isEmpty { fieldNotes.removeAll(keepingCapacity: true) }
    }

    mutating func endField() { ends.append(bytes.count) }

    mutating func appendField(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        ends.append(bytes.count)
    }

    func withField<T>(_ index: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T {
        let start = index == 0 ? 0 : ends[index - 1]
        let end = ends[index]
        return try bytes.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[start..<end])) }
    }

    func fieldString(_ index: Int) -> String {
        withField(index) { String(decoding: $0, as: UTF8.self) }
    }
}

/// A source of records: delimited text, JSON, JSON Lines, plain text, and the rows of XLSX
/// and ODS sheets and PDF tables.
protocol RecordReader {
    /// Column names when the format names them (JSON keys); nil when the first record may be
    /// a header row.
    var declaredColumns: [String]? { get }
    /// How far through the source reading has got, for progress and time estimates.
    var bytesConsumed: Int64 { get }
    /// Fills `record` with the next record; false at the end of the source.
    mutating func next(into record: inout Record) throws -> Bool
}

struct IngestionFailure: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Reads a file in large chunks, keeping the unconsumed tail so a record may span reads.
struct ChunkedInput {
    private let handle: FileHandle
    private(set) var buffer: [UInt8]
    /// The unconsumed bytes are `buffer[position..<filled]`.
    var position = 0
    private(set) var filled = 0
    private(set) var atEnd = false
    private(set) var consumedBeforeBuffer: Int64 = 0

    init(url: URL, skipping prefix: Int = 0, chunkSize: Int = 1 << 20) throws {
        handle = try FileHandle(forReadingFrom: url)
        if prefix > 0 { try handle.seek(toOffset: UInt64(prefix)) }
        consumedBeforeBuffer = Int64(prefix)
        buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    var bytesConsumed: Int64 { consumedBeforeBuffer + Int64(position) }

    /// Moves the unconsumed tail to the front and reads more after it; the buffer doubles when
    /// a single record fills it. Returns false when nothing more could be read.
    mutating func refill() throws -> Bool {
        guard !atEnd else { return false }
        if position > 0 {
            let tail = filled - position
            if tail > 0 {
                buffer.withUnsafeMutableBufferPointer { b in
                    _ = memmove(b.baseAddress!, b.baseAddress! + position, tail)
                }
            }
            consumedBeforeBuffer += Int64(position)
            filled = tail
            position = 0
        }
        if filled == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
        let fd = handle.fileDescriptor
        let count = buffer.withUnsafeMutableBufferPointer { b -> Int in
            while true {
                let n = read(fd, b.baseAddress! + filled, b.count - filled)
                if n < 0 && errno == EINTR { continue }
                return n
            }
        }
        if count < 0 { throw IngestionFailure("cannot read the file: \(String(cString: strerror(errno)))") }
        if count == 0 {
            atEnd = true
            return false
        }
        filled += count
        return true
    }

    func close() { try? handle.close() }
}
