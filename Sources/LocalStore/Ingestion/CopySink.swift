import DataSourceDomain

/// Receives a load's rows as `COPY … FROM STDIN` data (the PostgreSQL store's side of a
/// load that has no table file). Called from the pipeline's insert stage thread, in order:
/// `begin`, `send`…, then `end` when every row was sent or `abandon` when the load stopped.
/// A value that does not fit the sampled types makes the pipeline abandon its load and
/// `begin` again with the types of the whole file: what the abandoned load sent must never
/// become visible.
public protocol CopyTarget: AnyObject, Sendable {
    /// A load starts; its rows have `r` (the row's position, 1…) then one field per column.
    func begin(types: [ColumnType]) throws
    /// Whole rows of `COPY` data (the binary format's header before the first, its trailer
    /// after the last). May wait while the other side is behind (so memory stays
    /// bounded); throws when the other side stopped (its error, or cancellation).
    func send(_ lines: [UInt8]) throws
    /// Every row was sent.
    func end() throws
    /// The load stopped; nothing it sent may be kept.
    func abandon()
}

/// The two formats of `COPY … FROM STDIN` data a load's rows can be encoded in.
public enum CopyFormat: String, Sendable {
    case text
    case binary
}

/// The sink of a load whose rows go to a `CopyTarget`: each batch encoded as `COPY` data (in
/// `format`) on the insert stage's thread, handed over about a MiB at a time.
final class CopySink: RowSink {
    static let chunkBytes = 1 << 20
    private let target: any CopyTarget
    private let types: [ColumnType]
    private let format: CopyFormat
    private var lines: [UInt8] = []
    private var row: Int64 = 0

    init(target: any CopyTarget, types: [ColumnType], format: CopyFormat) throws {
        self.target = target
        self.types = types
        self.format = format
        lines.reserveCapacity(Self.chunkBytes + (64 << 10))
        if format == .binary { CopyBinary.appendHeader(to: &lines) }
        try target.begin(types: types)
    }

    func write(_ batch: RowBatch) throws {
        switch format {
        case .text: try writeText(batch)
        case .binary: try writeBinary(batch)
        }
    }

    private func writeText(_ batch: RowBatch) throws {
        let columns = batch.columns
        var cell = 0
        var textStart = 0
        for _ in 0..<batch.rows {
            row += 1
            CopyText.append(row, to: &lines)
            for column in 0..<columns {
                lines.append(0x09)
                let payload = batch.payloads[cell]
                switch batch.kinds[cell] {
                case RowBatch.Kind.int.rawValue:
                    if types[column] == .boolean { lines.append(payload != 0 ? 0x74 : 0x66) } else { CopyText.append(payload, to: &lines) }
                case RowBatch.Kind.double.rawValue:
                    CopyText.append(Double(bitPattern: UInt64(bitPattern: payload)), to: &lines)
                case RowBatch.Kind.text.rawValue:
                    let end = Int(payload)
                    CopyText.appendEscaped(UnsafeBufferPointer(start: batch.text + textStart, count: end - textStart), to: &lines)
                    textStart = end
                default:
                    lines.append(0x5C)
                    lines.append(0x4E)
                }
                cell += 1
            }
            lines.append(0x0A)
            if lines.count >= Self.chunkBytes { try flush() }
        }
    }

    /// Integers are stored as `double precision` (numbers) or `boolean`, as the table's
    /// columns are typed (`RowTable.sqlType` of the PostgreSQL store).
    private func writeBinary(_ batch: RowBatch) throws {
        let columns = batch.columns
        var cell = 0
        var textStart = 0
        for _ in 0..<batch.rows {
            row += 1
            CopyBinary.append(int16: Int16(columns + 1), to: &lines)
            CopyBinary.append(int32: 8, to: &lines)
            CopyBinary.append(int64: row, to: &lines)
            for column in 0..<columns {
                let payload = batch.payloads[cell]
                switch batch.kinds[cell] {
                case RowBatch.Kind.int.rawValue:
                    if types[column] == .boolean {
                        CopyBinary.append(int32: 1, to: &lines)
                        lines.append(payload != 0 ? 1 : 0)
                    } else {
                        CopyBinary.append(int32: 8, to: &lines)
                        CopyBinary.append(int64: Int64(bitPattern: Double(payload).bitPattern), to: &lines)
                    }
                case RowBatch.Kind.double.rawValue:
                    CopyBinary.append(int32: 8, to: &lines)
                    CopyBinary.append(int64: payload, to: &lines)
                case RowBatch.Kind.text.rawValue:
                    let end = Int(payload)
                    CopyBinary.append(int32: Int32(end - textStart), to: &lines)
                    lines.append(contentsOf: UnsafeBufferPointer(start: batch.text + textStart, count: end - textStart))
                    textStart = end
                default:
                    CopyBinary.append(int32: -1, to: &lines)
                }
                cell += 1
            }
            if lines.count >= Self.chunkBytes { try flush() }
        }
    }

    private func flush() throws {
        guard !lines.isEmpty else { return }
        try target.send(lines)
        lines.removeAll(keepingCapacity: true)
    }

    func finish(issues: [IssueRecord]) throws {
        if format == .binary { CopyBinary.append(int16: -1, to: &lines) }
        try flush()
        try target.end()
    }

    func abandon() { target.abandon() }
}

/// `COPY … FROM STDIN (FORMAT binary)`: a signature and two zero words, then per row the
/// field count and each field's length (-1 for null) and bytes in the type's binary form
/// (network byte order), then -1 as the trailer.
enum CopyBinary {
    static let signature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00]

    static func appendHeader(to lines: inout [UInt8]) {
        lines.append(contentsOf: signature)
        append(int32: 0, to: &lines)
        append(int32: 0, to: &lines)
    }

    @inline(__always) static func append(int16 value: Int16, to lines: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { lines.append(contentsOf: $0) }
    }

    @inline(__always) static func append(int32 value: Int32, to lines: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { lines.append(contentsOf: $0) }
    }

    @inline(__always) static func append(int64 value: Int64, to lines: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { lines.append(contentsOf: $0) }
    }
}

/// `COPY … FROM STDIN` text format: fields separated by tabs, rows ended by newlines, `\N`
/// for null, and backslash, tab, newline and carriage return escaped in text.
enum CopyText {
    static func append(_ value: Int64, to lines: inout [UInt8]) {
        if value < 0 { lines.append(0x2D) }
        var magnitude = value.magnitude
        // At most 20 digits; written backwards into a small buffer, then copied.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                start -= 1
                digits[start] = 0x30 + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            lines.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// The shortest text that reads back as the same double (PostgreSQL's `float8in` reads
    /// `inf`, `-inf` and `nan` too); whole numbers, such as datetimes' seconds, as integers.
    static func append(_ value: Double, to lines: inout [UInt8]) {
        if value == value.rounded(.towardZero), abs(value) < 1e15, !(value == 0 && value.sign == .minus) {
            append(Int64(value), to: &lines)
        } else {
            lines.append(contentsOf: value.description.utf8)
        }
    }

    static func appendEscaped(_ text: UnsafeBufferPointer<UInt8>, to lines: inout [UInt8]) {
        var runStart = 0
        for index in 0..<text.count {
            let escape: UInt8
            switch text[index] {
            case 0x5C: escape = 0x5C
            case 0x09: escape = 0x74
            case 0x0A: escape = 0x6E
            case 0x0D: escape = 0x72
            default: continue
            }
            if index > runStart { lines.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<index])) }
            lines.append(0x5C)
            lines.append(escape)
            runStart = index + 1
        }
        if text.count > runStart { lines.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<text.count])) }
    }
}
