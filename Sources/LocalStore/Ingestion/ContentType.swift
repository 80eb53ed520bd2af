import Foundation

/// Guesses a MIME type from the file name, then from the first bytes.
enum ContentTypeGuess {
    static func guess(fileName: String, prefix: [UInt8]) -> String {
        let ext = (fileName as NSString).pathExtension.lowercased()
        switch ext {
        case "csv", "psv", "dsv": return "text/csv"
        case "tsv", "tab": return "text/tab-separated-values"
        case "json": return "application/json"
        case "jsonl", "ndjson": return "application/x-ndjson"
        case "txt", "text", "log": return "text/plain"
        case "xlsx": return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        case "pdf": return "application/pdf"
        case "ods": return "application/vnd.oasis.opendocument.spreadsheet"
        default: break
        }
        if prefix.starts(with: Array("%PDF".utf8)) { return "application/pdf" }
        if prefix.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            // An OpenDocument file stores its `mimetype` entry first, uncompressed.
            if prefix.count > 38, Array(prefix[30..<38]) == Array("mimetype".utf8),
                String(decoding: prefix[38..<min(prefix.count, 120)], as: UTF8.self).contains("opendocument.spreadsheet")
            {
                return "application/vnd.oasis.opendocument.spreadsheet"
            }
            return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        }
        if SourceInspection.looksBinary(prefix) && !prefix.starts(with: [0xFF, 0xFE]) && !prefix.starts(with: [0xFE, 0xFF]) {
            return "application/octet-stream"
        }
        let body = prefix.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(prefix.dropFirst(3)) : prefix
        guard let first = body.first(where: { !CellParsing.isSpace($0) }) else { return "text/plain" }
        if first == 0x5B { return "application/json" }
        if first == 0x7B {
            // One object per line is JSON Lines; one object spanning lines is JSON.
            let lines = body.split(separator: 0x0A).filter { $0.contains(where: { !CellParsing.isSpace($0) }) }
            if lines.count > 1, lines.prefix(2).allSatisfy({ $0.first(where: { !CellParsing.isSpace($0) }) == 0x7B && $0.last(where: { !CellParsing.isSpace($0) }) == 0x7D }) {
                return "application/x-ndjson"
            }
            return "application/json"
        }
        // Without a name that says so, words separated by spaces are text, not a table.
        let dialect = SourceInspection.sniffDialect(body)
        let counts = SourceInspection.fieldCounts(body, delimiter: dialect.delimiter ?? 0x2C, quote: 0x22, maxLines: 20)
        if dialect.delimiter != 0x20, let firstCount = counts.first, firstCount > 1, counts.allSatisfy({ $0 == firstCount }) {
            return dialect.delimiter == 0x09 ? "text/tab-separated-values" : "text/csv"
        }
        return "text/plain"
    }
}
