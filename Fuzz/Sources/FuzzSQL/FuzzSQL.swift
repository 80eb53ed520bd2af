import DataSourceDomain
import Foundation
import FuzzSupport
@testable import LocalStore

/// `datasources/query`: the statement checks (one statement, SELECT only, reads of the named
/// sources and pure functions, limits on time and size) over any text. A statement must be
/// refused or answered, never crash, and never change the source's row file — the file is
/// hashed before and after each statement.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSQL(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let sql = String(decoding: bytes(data, size), as: UTF8.self)
    _ = LocalBackend.quotedIdentifiers(in: sql)
    let request = SQLQuery(sql: sql, limit: 50, timeoutMs: 100)
    _ = try? SQLQueryEngine.run(request, sources: [source])
    if digest(source.path) != sourceDigest { violated("the statement changed the source's row file: \(sql.debugDescription)") }
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzSQL_main")
public func fuzzSQLMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzSQL)
}

/// One completed source, processed from a small CSV by the real pipeline, reachable as
/// `sales`, `t` and its quoted id.
let source: SQLSource = {
    let directory = scratchDirectory.appendingPathComponent("source")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let csv = directory.appendingPathComponent("sales.csv")
    let rows = directory.appendingPathComponent("sales.sqlite")
    let written = FileManager.default.createFile(atPath: csv.path, contents: Data("""
        region,amount,day,at,ok,note
        north,12.5,2024-01-02,2024-01-02T10:00:00Z,true,first
        south,-3,2024-02-29,2024-02-29T23:59:59Z,false,"a, b"
        east,,2023-12-31,,true,
        west,1e3,2024-03-01,2024-03-01T00:00:00+02:00,false,ünïcode

        """.utf8))
    if !written { violated("cannot write \(csv.path)") }
    do {
        let pipeline = try IngestionPipeline(
            source: csv, contentType: "text/csv", options: ParseOptions(), output: rows, workDirectory: directory,
            isCancelled: { false }, stages: { false }, progress: { _, _ in })
        let result = try pipeline.run()
        let id = DataSourceID("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f")!
        return SQLSource(id: id, names: ["sales", "t", id.rawValue], columns: result.columns, path: rows.path)
    } catch {
        violated("the fuzz source could not be processed: \(error)")
    }
}()

let sourceDigest = digest(source.path)

/// FNV-1a over the file's bytes: the file is a few pages, so hashing it per input is cheap.
func digest(_ path: String) -> UInt64 {
    guard let data = FileManager.default.contents(atPath: path) else { violated("the source's row file is gone") }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return hash
}
