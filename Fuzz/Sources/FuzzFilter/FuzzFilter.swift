import DataSourceDomain
import FuzzSupport
import GRDB
@testable import LocalStore

/// The `filter` parameter of `datasources/data` and `export`: any text must be refused with a
/// FilterError or parsed, and a parsed filter must compile to SQL that SQLite accepts and runs
/// against a table of every column type (a compile that SQLite refuses would be a
/// STORAGE_ERROR where the user deserved an answer or INVALID_PARAMETERS).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFilter(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: bytes(data, size), as: UTF8.self)
    let expression: FilterExpression
    do throws(FilterError) {
        expression = try FilterParser.parse(text, columns: columns)
    } catch {
        if error.position < 0 { violated("negative error position \(error.position) for \(text.debugDescription)") }
        return 0
    }
    var arguments: [DatabaseValue] = []
    let condition = FilterSQL.compile(expression, columns: columns, arguments: &arguments)
    do {
        _ = try table.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM rows WHERE \(condition)", arguments: StatementArguments(arguments))
        }
    } catch {
        violated("the compiled filter fails in SQLite: \(error)\nfilter: \(text.debugDescription)\nSQL: \(condition)")
    }
    return 0
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzFilter_main")
public func fuzzFilterMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzFilter)
}

/// One column of each type, under names that need quoting as well as plain ones.
let columns = [
    DataColumn(name: "price", type: .number), DataColumn(name: "category", type: .string),
    DataColumn(name: "in_stock", type: .boolean), DataColumn(name: "day", type: .date),
    DataColumn(name: "at", type: .datetime), DataColumn(name: "unit price", type: .number),
    DataColumn(name: "naïve `name`", type: .string),
]

/// The table filters run against, laid out as the store lays out a source's rows (c0, c1, …),
/// with the store's text functions.
let table: DatabaseQueue = {
    var configuration = Configuration()
    configuration.prepareDatabase { db in
        db.add(function: QueryEngine.containsFunction)
        db.add(function: QueryEngine.startsWithFunction)
        db.add(function: QueryEngine.endsWithFunction)
    }
    do {
        let queue = try DatabaseQueue(configuration: configuration)
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE rows (c0 REAL, c1 TEXT, c2 INTEGER, c3 TEXT, c4 REAL, c5 REAL, c6 TEXT)")
            try db.execute(sql: "INSERT INTO rows VALUES (1.5, 'Ab', 1, '2024-01-02', 1700000000, NULL, 'é'), (NULL, NULL, 0, NULL, NULL, 2, '')")
        }
        return queue
    } catch {
        violated("the filter table could not be made: \(error)")
    }
}()
