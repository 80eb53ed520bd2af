import DataSourceDomain
import Foundation
import ZIPFoundation
import CZlib

/// The zip container that XLSX and ODS share: parts looked up by path and inflated in chunks
/// under one cap, so a zip bomb or a corrupt archive fails the same clear way for both.
struct SpreadsheetArchive {
    /// Inflating stops past this many bytes for one part (and past 100× the archive's size).
    static let absoluteCap: Int64 = 2 << 30
    /// The format's name in messages ("XLSX", "ODS"): the declared one until the parts say.
    var format: String
    let archive: Archive
    let url: URL
    /// The archive's size, for progress: a part's scanned bytes are scaled to it.
    let size: Int64
    let cap: Int64

    init(url: URL, format: String) throws {
        self.format = format
        self.url = url
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            // Office saves a password-protected workbook (and a legacy .xls) as an OLE
            // compound file, not a zip: say so rather than "corrupt".
            if let prefix = try? SourceInspection.readPrefix(url, count: 8), prefix.starts(with: [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
                throw IngestionFailure(
                    "the \(format) file is an OLE compound document, not a zip: a password-protected workbook or a legacy .xls, which cannot be read; save it as .xlsx or .ods without a password")
            }
            throw IngestionFailure("the \(format) file is not a readable zip archive (corrupt or truncated)")
        }
        size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int64) ?? 0
        cap = min(Self.absoluteCap, max(256 << 20, size * 100))
    }

    /// The part at `path`; names are matched without regard to case as a fallback, since
    /// some writers spell them differently from the specification.
    func entry(_ path: String) -> Entry? {
        archive[path] ?? archive.first { $0.path.lowercased() == path.lowercased() }
    }

    /// A small part read whole (workbook, styles, shared strings); nil when absent.
    func read(_ path: String) throws -> Data? {
        guard let e = entry(path) else { return nil }
        var data = Data()
        try inflate(e) { data.append($0) }
        return data
    }

    /// A large part (a sheet) inflated to a work file, to be mapped and scanned.
    func extract(_ entry: Entry, to file: URL) throws {
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else { throw IngestionFailure("cannot create a work file for the sheet") }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        do {
            try inflate(entry) { handle.write($0) }
        } catch {
            try? FileManager.default.removeItem(at: file)
            throw error
        }
    }

    func inflate(_ entry: Entry, _ body: (Data) throws -> Void) throws {
        let cap = cap
        if Int64(clamping: entry.uncompressedSize) > cap {
            throw IngestionFailure("the \(format) part \(entry.path) would inflate to \(entry.uncompressedSize) bytes, over the limit of \(cap) bytes (a zip bomb?)")
        }
        var total: Int64 = 0
        let consume: (Data) throws -> Void = { [format] chunk in
            total += Int64(chunk.count)
            if total > cap { throw IngestionFailure("the \(format) part \(entry.path) inflates past the limit of \(cap) bytes (a zip bomb?)") }
            try body(chunk)
        }
        do {
            if entry.isCompressed, let start = try ZipLayout.dataOffset(of: entry.path, in: url) {
                try inflateBounded(entry, from: start, consume)
            } else {
                _ = try archive.extract(entry, bufferSize: 1 << 16, consumer: consume)
            }
        } catch let failure as IngestionFailure {
            throw failure
        } catch {
            throw IngestionFailure("the \(format) file is corrupt: \(entry.path) cannot be inflated (\(error))")
        }
    }

    /// Inflates a deflated part reading no further than its compressed size, with zlib
    /// directly. ZIPFoundation's inflater on Linux reads the archive on past the part until
    /// zlib sees the stream's end, and tells zlib every chunk is full: a stream that never
    /// ends (found by FuzzODS: a 716-byte file) had it read empty chunks at the end of the
    /// file forever, hanging the load. Here the input ends where the part does, and a stream
    /// still open there is corrupt.
    private func inflateBounded(_ entry: Entry, from start: UInt64, _ consume: (Data) throws -> Void) throws {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        try handle.seek(toOffset: start)
        var remaining = entry.compressedSize
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw IngestionFailure("the \(format) part \(entry.path) cannot be inflated (zlib would not start)")
        }
        defer { inflateEnd(&stream) }
        let bufferSize = 1 << 16
        var output = [UInt8](repeating: 0, count: bufferSize)
        while true {
            guard remaining > 0 else {
                throw IngestionFailure("the \(format) file is corrupt: \(entry.path) ends before its compressed data does")
            }
            var input = [UInt8](try handle.read(upToCount: Int(min(UInt64(bufferSize), remaining))) ?? Data())
            guard !input.isEmpty else { throw IngestionFailure("the \(format) file is truncated: \(entry.path) is cut short") }
            remaining -= UInt64(input.count)
            var ended = false
            try input.withUnsafeMutableBufferPointer { inBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = UInt32(inBuffer.count)
                repeat {
                    let (result, produced) = output.withUnsafeMutableBufferPointer { outBuffer -> (Int32, Int) in
                        stream.next_out = outBuffer.baseAddress
                        stream.avail_out = UInt32(outBuffer.count)
                        let result = CZlib.inflate(&stream, Z_NO_FLUSH)
                        return (result, outBuffer.count - Int(stream.avail_out))
                    }
                    switch result {
                    case Z_OK, Z_BUF_ERROR: break
                    case Z_STREAM_END: ended = true
                    default: throw IngestionFailure("the \(format) file is corrupt: \(entry.path) is not valid deflate data")
                    }
                    if produced > 0 { try consume(Data(output[..<produced])) }
                    // Z_BUF_ERROR: no progress is possible until more input comes.
                    if result == Z_BUF_ERROR { break }
                } while !ended && (stream.avail_in > 0 || stream.avail_out == 0)
            }
            if ended { return }
        }
    }
}

/// Where a part's compressed bytes start, read from the zip's own directories: ZIPFoundation
/// keeps that offset to itself.
enum ZipLayout {
    /// nil when the archive uses zip64 offsets or the part is not found the plain way (the
    /// caller then lets ZIPFoundation read it).
    static func dataOffset(of path: String, in url: URL) throws -> UInt64? {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        // The end-of-central-directory record: 22 bytes and a comment of up to 65,535.
        let tailLength = min(size, 22 + 65_535)
        try handle.seek(toOffset: size - tailLength)
        let tail = [UInt8](try handle.read(upToCount: Int(tailLength)) ?? Data())
        func u16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
        func u32(_ b: [UInt8], _ i: Int) -> UInt64 { UInt64(u16(b, i)) | UInt64(u16(b, i + 2)) << 16 }
        guard tail.count >= 22, let end = stride(from: tail.count - 22, through: 0, by: -1).first(where: { u32(tail, $0) == 0x0605_4B50 }) else {
            return nil
        }
        let entries = u16(tail, end + 10)
        let directorySize = u32(tail, end + 12)
        let directoryStart = u32(tail, end + 16)
        guard directoryStart != 0xFFFF_FFFF, directorySize <= 64 << 20, directoryStart + directorySize <= size else { return nil }
        try handle.seek(toOffset: directoryStart)
        let directory = [UInt8](try handle.read(upToCount: Int(directorySize)) ?? Data())
        let wanted = Array(path.utf8)
        var i = 0
        for _ in 0..<entries {
            guard i + 46 <= directory.count, u32(directory, i) == 0x0201_4B50 else { return nil }
            let nameLength = u16(directory, i + 28)
            let next = i + 46 + nameLength + u16(directory, i + 30) + u16(directory, i + 32)
            guard next <= directory.count else { return nil }
            if directory[(i + 46)..<(i + 46 + nameLength)].elementsEqual(wanted) {
                let header = u32(directory, i + 42)
                guard header != 0xFFFF_FFFF, header + 30 <= size else { return nil }
                try handle.seek(toOffset: header)
                let local = [UInt8](try handle.read(upToCount: 30) ?? Data())
                guard local.count == 30, u32(local, 0) == 0x0403_4B50 else { return nil }
                return header + 30 + UInt64(u16(local, 26)) + UInt64(u16(local, 28))
            }
            i = next
        }
        return nil
    }
}

/// A workbook opened on the sheet to read (XLSX, ODS): the pipeline asks it for readers of
/// that sheet's rows, from a given data row on.
protocol SpreadsheetWorkbook: AnyObject {
    var sheetNames: [String] { get }
    /// The index in `sheetNames` of the sheet being read.
    var sheetIndex: Int { get }
    func reader(skipping start: Int64, width: Int?) throws -> any RecordReader
}

extension SpreadsheetWorkbook {
    var sheets: SpreadsheetSheets { SpreadsheetSheets(names: sheetNames, read: sheetNames[sheetIndex]) }

    /// `options.sheet`: a sheet's exact name, or its 1-based number; the first sheet when absent.
    static func chooseSheet(_ sheet: String?, among names: [String]) throws -> Int {
        guard !names.isEmpty else { throw IngestionFailure("the workbook has no sheets") }
        guard let sheet else { return 0 }
        if let exact = names.firstIndex(of: sheet) { return exact }
        if let n = Int(sheet.trimmingCharacters(in: .whitespaces)), n >= 1, n <= names.count { return n - 1 }
        let list = names.map { "\"\($0)\"" }.joined(separator: ", ")
        throw IngestionFailure("options.sheet \"\(sheet)\" names no sheet of this workbook; its sheets are \(list) (or a 1-based number)")
    }
}

/// Dates and times as the spreadsheet readers write them (calendar arithmetic: `CivilDate`).
enum SheetDates {
    /// Days since 1970 and seconds into the day as ISO text: the date alone at midnight.
    static func iso(days: Int64, seconds: Int) -> String {
        let (y, m, d) = CivilDate.fromDays(days)
        let date = String(format: "%04d-%02d-%02d", y, m, d)
        return seconds == 0 ? date : "\(date)T\(clock(seconds))"
    }

    static func clock(_ seconds: Int) -> String {
        String(format: "%02d:%02d:%02d", seconds / 3600, seconds / 60 % 60, seconds % 60)
    }
}

/// A sheet's inflated XML, mapped read-only. The pages a scan has passed are given back as it
/// goes, so reading a sheet holds about the current row in memory, not the whole part (which
/// is many times the file's size).
final class MappedSheet: @unchecked Sendable {
    // Unchecked: one reader, on one thread at a time, scans and releases a mapping.
    let bytes: UnsafeBufferPointer<UInt8>
    private let length: Int
    private var released = 0
    private static let releaseStep = 8 << 20

    init(url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw IngestionFailure("cannot open the sheet's work file: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else {
            length = 0
            bytes = UnsafeBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, Int(size), PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw IngestionFailure("cannot map the sheet's work file: \(String(cString: strerror(errno)))")
        }
        length = Int(size)
        bytes = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: length)
    }

    func scan<T>(_ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T { try body(bytes) }

    /// Gives back the whole pages before `offset`, in steps of a few MiB; the scan never goes
    /// back before its position (a page touched again would only be read again from the file).
    func release(before offset: Int) {
        guard let base = bytes.baseAddress, offset - released >= Self.releaseStep else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let end = min(offset, length) / page * page
        guard end > released else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base) + released, end - released, MADV_DONTNEED)
        released = end
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), length) }
    }
}

extension Record {
    /// Makes the record one sheet row (XLSX and ODS alike): its cells (nil: empty) padded to
    /// `width`, or cut back to it where the cells past it are empty, and an `error_cell` note
    /// for each error cell within it.
    mutating func fill(sheetRow row: inout [(text: String, isText: Bool)?], errorCells: [(Int, String)], width: Int?) {
        if let width {
            if row.count < width { row += Array(repeating: nil, count: width - row.count) } else if row.count > width {
                while row.count > width, row.last.map({ $0 == nil }) == true { row.removeLast() }
            }
        }
        reset()
        textOnly.removeAll(keepingCapacity: true)
        for cell in row {
            if let cell {
                appendField(cell.text)
                textOnly.append(cell.isText)
            } else {
                endField()
                textOnly.append(false)
            }
        }
        for (column, text) in errorCells where width.map({ column < $0 }) ?? true {
            fieldNotes.append(FieldNote(field: column, kind: "error_cell", reason: "the cell holds the error \(text.isEmpty ? "value" : text); read as null"))
        }
    }
}
