import DataSourceDomain
import Foundation
import GRDB
import JSONKit
import Synchronization

/// Answers `datasources/data` from a completed source's row file: filter compiled to
/// parameterised SQL, stable nulls-last sorting backed by indexes built on first use,
/// cached filtered counts, and signed keyset cursors.
final class QueryEngine: Sendable {
    let layout: StoreLayout
    let secret: StoreSecret
    private let connections = Mutex<[String: any DatabaseReader]>([:])
    private let countCache = Mutex<[String: Int]>([:])
    private let knownIndexes = Mutex<Set<String>>([])

    init(layout: StoreLayout, secret: StoreSecret) {
        self.layout = layout
        self.secret = secret
    }

    /// A source's row file through a pool in WAL mode, so that reads never wait for an index
    /// being built beside them; read-only when the pool cannot be set up (a full disk), so
    /// that reading still works.
    func connection(_ id: DataSourceID) throws -> any DatabaseReader {
        if let open = connections.withLock({ $0[id.rawValue] }) { return open }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            db.add(function: Self.containsFunction)
            db.add(function: Self.startsWithFunction)
            db.add(function: Self.endsWithFunction)
            // Scans read the file's pages in place (mapped) rather than copied into the cache.
            try db.execute(sql: "PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456")
        }
        let path = layout.table(id.rawValue).path
        // Gone since the catalog was read (deleted by another agent): opening would create an
        // empty file in its place.
        guard FileManager.default.fileExists(atPath: path) else { throw CocoaError(.fileNoSuchFile) }
        let queue: any DatabaseReader
        do {
            queue = try DatabasePool(path: path, configuration: configuration)
        } catch {
            configuration.readonly = true
            queue = try DatabaseQueue(path: path, configuration: configuration)
        }
        return connections.withLock { open in
            if let existing = open[id.rawValue] { return existing }
            if open.count >= 16, let victim = open.keys.first { open[victim] = nil }
            open[id.rawValue] = queue
            return queue
        }
    }

    /// Forgets a source's connection and counts (before its file is deleted).
    func forget(_ id: DataSourceID) {
        connections.withLock { $0[id.rawValue] = nil }
        countCache.withLock { cache in cache = cache.filter { !$0.key.hasPrefix(id.rawValue) } }
        knownIndexes.withLock { known in known = known.filter { !$0.hasPrefix(id.rawValue) } }
    }

    // Text operators fold case beyond ASCII (Unicode lowercase mapping) in Swift, since
    // SQLite's LIKE and lower() fold ASCII only.
    static let containsFunction = DatabaseFunction("ds_contains", argumentCount: 2, pure: true) { values in
        guard let haystack = String.fromDatabaseValue(values[0]), let needle = String.fromDatabaseValue(values[1]) else { return false }
        return haystack.lowercased().contains(needle)
    }
    static let startsWithFunction = DatabaseFunction("ds_startswith", argumentCount: 2, pure: true) { values in
        guard let haystack = String.fromDatabaseValue(values[0]), let needle = String.fromDatabaseValue(values[1]) else { return false }
        return haystack.lowercased().hasPrefix(needle)
    }
    static let endsWithFunction = DatabaseFunction("ds_endswith", argumentCount: 2, pure: true) { values in
        guard let haystack = String.fromDatabaseValue(values[0]), let needle = String.fromDatabaseValue(values[1]) else { return false }
        return haystack.lowercased().hasSuffix(needle)
    }

    // MARK: Query

    func page(_ query: DataQuery, columns: [DataColumn], rowCount: Int) throws -> DataPage {
        let names = columns.map(\.name)
        let (sortKeys, returned) = try query.positions(in: columns)
        // One sort column is served by an index per direction; several by a scan and a sorter.
        let sortIndex = sortKeys.count == 1 ? sortKeys[0].index : nil
        var whereSQL = ""
        var arguments: [DatabaseValue] = []
        let filterText = query.filter?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if !filterText.isEmpty {
            let expression = try FilterParser.parseParameter(filterText, columns: columns)
            whereSQL = FilterSQL.compile(expression, columns: columns, arguments: &arguments)
        }
        let order = sortKeys.first?.direction ?? .asc
        let sortScope = sortKeys.map { "c\($0.index) \($0.direction.rawValue)" }.joined(separator: ",")
        let cursorScope = sortKeys.count <= 1
            ? "\(query.datasourceId.rawValue)|\(sortKeys.first.map { names[$0.index] } ?? "")|\(order.rawValue)|\(filterText)"
            : "\(query.datasourceId.rawValue)|\(sortScope)|\(filterText)"
        var page = query.page
        var cursor: Cursor?
        if let cursorText = query.cursor {
            cursor = try Cursor.decode(cursorText, scope: cursorScope, secret: secret)
            page = cursor!.page
        }
        let queue = try connection(query.datasourceId)

        // The returned columns (all, or those asked for, in that order), then the sort column
        // if it is not among them: the keyset needs its value.
        let fetchedColumns = returned + sortKeys.map(\.index).filter { !returned.contains($0) }
        let sortPositions = sortKeys.map { key in fetchedColumns.firstIndex(of: key.index)! }
        let selectList = (["rowid"] + fetchedColumns.map { "c\($0)" }).joined(separator: ", ")
        let want = query.limit + 1
        let offset = Pagination.offset(page: page, limit: query.limit)
        let segments = sortKeys.count > 1
            ? [Self.multiColumnSegment(sortKeys, cursor: cursor)]
            : Self.segments(sortColumn: sortIndex, order: order, cursor: cursor)
        let countPending = !whereSQL.isEmpty && countCache.withLock({ $0[cursorScope] }) == nil
        // The first page of a filter not counted yet, sorted by a column without its index yet,
        // is answered with its count from one scan (below).
        let oneScan = try countPending && cursor == nil && offset == 0
            && sortIndex.map { column in try !queue.read { db in try Self.hasIndex(db, column: column, order: order) } } ?? false
        // Any other first count is a second scan: on a pool it runs on another reader beside
        // the page's scan, so that it costs one scan's time on two cores, not two.
        var concurrentCount: ConcurrentCount?
        if countPending, !oneScan, let pool = queue as? DatabasePool {
            concurrentCount = ConcurrentCount(pool, sql: "SELECT count(*) FROM rows WHERE \(whereSQL)", arguments: arguments)
        }

        let (rows, lastKey, hasMore, total): ([[JSONValue]], ([DatabaseValue], Int64)?, Bool, Int) = try queue.read { db in
            var rows: [[JSONValue]] = []
            var lastKey: ([DatabaseValue], Int64)?
            var hasMore = false
            var remainingOffset = cursor == nil ? offset : 0
            func append(_ row: Row) {
                var values: [JSONValue] = []
                values.reserveCapacity(returned.count)
                for (position, index) in returned.enumerated() {
                    values.append(Self.json(row[position + 1] as DatabaseValue, type: columns[index].type))
                }
                rows.append(values)
                lastKey = (sortPositions.map { row[$0 + 1] as DatabaseValue }, row[0] as Int64)
            }
            // One scan: the filter's matches (rowid and sort value only) are kept aside once;
            // the page is their top rows in the order the segments give, `(c IS NULL),
            // c <order>, rowid`, and the count is their number.
            if oneScan, let sortIndex {
                let direction = order == .asc ? "ASC" : "DESC"
                let tableColumns = (["rows.rowid"] + fetchedColumns.map { "rows.c\($0)" }).joined(separator: ", ")
                let sql = """
                    WITH m AS MATERIALIZED (SELECT rowid AS r, c\(sortIndex) AS k FROM rows WHERE \(whereSQL)),
                    top AS (SELECT r, k FROM m ORDER BY (k IS NULL), k \(direction), r LIMIT \(want))
                    SELECT \(tableColumns), (SELECT count(*) FROM m) FROM top JOIN rows ON rows.rowid = top.r
                    ORDER BY (top.k IS NULL), top.k \(direction), top.r
                    """
                var total = 0
                let fetched = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(arguments))
                while let row = try fetched.next() {
                    total = row[fetchedColumns.count + 1]
                    if rows.count == query.limit { hasMore = true; break }
                    append(row)
                }
                // No row: no match, a count of 0.
                countCache.withLock { cache in
                    if cache.count > 1000 { cache.removeAll() }
                    cache[cursorScope] = total
                }
                return (rows, lastKey, hasMore, total)
            }
            // Each segment is one index range in key order; together they are the whole order.
            for (index, segment) in segments.enumerated() where !hasMore {
                var conditions = [segment.condition]
                var segmentArguments = segment.arguments
                if !whereSQL.isEmpty {
                    conditions.insert("(\(whereSQL))", at: 0)
                    segmentArguments = arguments + segmentArguments
                }
                let sql = "SELECT \(selectList) FROM rows WHERE \(conditions.joined(separator: " AND ")) \(segment.orderBy) LIMIT \(want - rows.count) OFFSET \(remainingOffset)"
                let fetched = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(segmentArguments))
                var fetchedCount = 0
                while let row = try fetched.next() {
                    fetchedCount += 1
                    if rows.count == query.limit { hasMore = true; break }
                    append(row)
                }
                if remainingOffset > 0 && index + 1 < segments.count {
                    if fetchedCount > 0 {
                        remainingOffset = 0
                    } else {
                        // The offset lies beyond this segment: skip as many rows as it holds.
                        let countSQL = "SELECT count(*) FROM rows WHERE \(conditions.joined(separator: " AND "))"
                        let inSegment = try Int.fetchOne(db, sql: countSQL, arguments: StatementArguments(segmentArguments)) ?? 0
                        remainingOffset = max(0, remainingOffset - inSegment)
                    }
                }
            }
            let total: Int
            if whereSQL.isEmpty {
                total = rowCount
            } else if let cached = countCache.withLock({ $0[cursorScope] }) {
                total = cached
            } else {
                if let concurrentCount {
                    total = try concurrentCount.value()
                } else {
                    total = try Int.fetchOne(db, sql: "SELECT count(*) FROM rows WHERE \(whereSQL)", arguments: StatementArguments(arguments)) ?? 0
                }
                countCache.withLock { cache in
                    if cache.count > 1000 { cache.removeAll() }
                    cache[cursorScope] = total
                }
            }
            return (rows, lastKey, hasMore, total)
        }
        // Built after the answer, so that the build does not take the second core from it.
        if let sortIndex, let pool = queue as? DatabasePool {
            ensureIndex(pool, id: query.datasourceId, column: sortIndex, order: order)
        }
        var nextCursor: String?
        if hasMore, let lastKey {
            nextCursor = Cursor(page: min(page, Pagination.maxPage - 1) + 1, sortValues: lastKey.0, rowid: lastKey.1).encode(scope: cursorScope, secret: secret)
        }
        return DataPage(
            columns: returned.map { DataColumn(name: columns[$0].name, type: columns[$0].type) }, rows: rows,
            pagination: Pagination(page: page, limit: query.limit, total: total, nextCursor: nextCursor))
    }

    /// A count started on a thread of its own; `value()` waits for it.
    final class ConcurrentCount: @unchecked Sendable {
        // Written once by the counting thread before `done` is signalled, read after.
        private var result: Result<Int, any Error> = .success(0)
        private let done = DispatchSemaphore(value: 0)

        init(_ pool: DatabasePool, sql: String, arguments: [DatabaseValue]) {
            DispatchQueue.global(qos: .userInitiated).async { [self] in
                result = Result { try pool.read { db in try Int.fetchOne(db, sql: sql, arguments: StatementArguments(arguments)) ?? 0 } }
                done.signal()
            }
        }

        func value() throws -> Int {
            done.wait()
            return try result.get()
        }
    }

    struct Segment {
        var condition: String
        var arguments: [DatabaseValue]
        var orderBy: String
    }

    /// The order `(c IS NULL), c <order>, rowid` as consecutive index ranges, each served by
    /// the index on `c <order>` (whose entries end with the rowid): the non-null values, then
    /// the nulls. After a cursor: the rest of its value's ties, the values beyond it, the nulls.
    static func segments(sortColumn: Int?, order: SortDirection, cursor: Cursor?) -> [Segment] {
        guard let sortColumn else {
            if let cursor { return [Segment(condition: "rowid > ?", arguments: [cursor.rowid.databaseValue], orderBy: "ORDER BY rowid")] }
            return [Segment(condition: "1", arguments: [], orderBy: "ORDER BY rowid")]
        }
        let c = "c\(sortColumn)"
        let direction = order == .asc ? "ASC" : "DESC"
        let byValue = "ORDER BY \(c) \(direction), rowid ASC"
        let nulls = "\(c) IS NULL"
        guard let cursor else {
            return [
                Segment(condition: "\(c) IS NOT NULL", arguments: [], orderBy: byValue),
                Segment(condition: nulls, arguments: [], orderBy: "ORDER BY rowid"),
            ]
        }
        let rowid = cursor.rowid.databaseValue
        let value = cursor.sortValues.first ?? .null
        if value.isNull {
            return [Segment(condition: "\(nulls) AND rowid > ?", arguments: [rowid], orderBy: "ORDER BY rowid")]
        }
        return [
            Segment(condition: "\(c) = ? AND rowid > ?", arguments: [value, rowid], orderBy: "ORDER BY rowid"),
            Segment(condition: "\(c) \(order == .asc ? ">" : "<") ?", arguments: [value], orderBy: byValue),
            Segment(condition: nulls, arguments: [], orderBy: "ORDER BY rowid"),
        ]
    }

    /// Several sort columns: one range in the order `(c1 IS NULL), c1 dir1, (c2 IS NULL), …,
    /// rowid`; after a cursor, the rows beyond its key in that order (nulls last per column).
    static func multiColumnSegment(_ keys: [(index: Int, direction: SortDirection)], cursor: Cursor?) -> Segment {
        let orderBy = "ORDER BY " + (keys.map { "(c\($0.index) IS NULL), c\($0.index) \($0.direction == .asc ? "ASC" : "DESC")" } + ["rowid ASC"])
            .joined(separator: ", ")
        guard let cursor, cursor.sortValues.count == keys.count else {
            return Segment(condition: "1", arguments: [], orderBy: orderBy)
        }
        var arguments: [DatabaseValue] = []
        // beyond(i): the row comes after the cursor's key, given keys before i are equal.
        func beyond(_ i: Int) -> String {
            guard i < keys.count else {
                arguments.append(cursor.rowid.databaseValue)
                return "rowid > ?"
            }
            let c = "c\(keys[i].index)"
            let value = cursor.sortValues[i]
            if value.isNull { return "(\(c) IS NULL AND \(beyond(i + 1)))" }
            arguments.append(value)
            let after = "\(c) \(keys[i].direction == .asc ? ">" : "<") ?"
            arguments.append(value)
            let tie = "\(c) = ?"
            return "(\(c) IS NULL OR \(after) OR (\(tie) AND \(beyond(i + 1))))"
        }
        let condition = beyond(0)
        return Segment(condition: condition, arguments: arguments, orderBy: orderBy)
    }

    /// Whether the sort index on `c <order>` is there (built and committed) for this read.
    static func hasIndex(_ db: Database, column: Int, order: SortDirection) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", arguments: ["sort_c\(column)_\(order.rawValue)"]) ?? false
    }

    /// Index policy: the first sort by a column in a direction answers at once from a scan
    /// (SQLite's sorter keeps only the rows the page needs) and builds the index on
    /// `c <order>` in the background, one build at a time for the whole process; pages after
    /// it use the index. A build that fails (a full disk) is tried again by a later sort.
    private func ensureIndex(_ pool: DatabasePool, id: DataSourceID, column: Int, order: SortDirection) {
        let name = "sort_c\(column)_\(order.rawValue)"
        let key = "\(id.rawValue)|\(name)"
        let start = knownIndexes.withLock { known -> Bool in
            guard !known.contains(key) else { return false }
            known.insert(key)
            return true
        }
        guard start else { return }
        Self.indexBuilds.async { [self] in
            do {
                try pool.write { db in
                    try db.execute(sql: "CREATE INDEX IF NOT EXISTS \(name) ON rows(c\(column) \(order == .asc ? "ASC" : "DESC"))")
                }
            } catch {
                // Not built: forget it, so that a later sort tries again.
                knownIndexes.withLock { _ = $0.remove(key) }
            }
        }
    }

    /// Where indexes are built: one at a time, off every request's path.
    private static let indexBuilds = DispatchQueue(label: "datasource-agent.index-builds", qos: .utility)

    /// Waits until every index build asked for so far has finished (tests, benchmarks).
    func waitForIndexBuilds() {
        Self.indexBuilds.sync {}
    }

    /// A column of a raw SQLite statement's current row, made JSON the same way.
    static func json(sqliteStatement: OpaquePointer, index: Int32, type: ColumnType) -> JSONValue {
        json(DatabaseValue(sqliteStatement: sqliteStatement, index: index), type: type)
    }

    static func json(_ value: DatabaseValue, type: ColumnType) -> JSONValue {
        switch value.storage {
        case .null: return .null
        case .int64(let i):
            return type == .boolean ? .bool(i != 0) : .int(i)
        case .double(let d):
            return type == .datetime ? .string(CellParsing.formatDatetime(d)) : .double(d)
        case .string(let s): return .string(s)
        case .blob(let data): return .string(data.base64EncodedString())
        }
    }
}

/// A keyset position: the last row's sort value and rowid, and the page it ends. Signed with
/// the store secret and bound to the source, sort, order and filter it was made for.
struct Cursor {
    var page: Int
    /// The last row's value of each sort column (none without a sort).
    var sortValues: [DatabaseValue]
    var rowid: Int64

    static func json(_ value: DatabaseValue) -> JSONValue {
        switch value.storage {
        case .null, .blob: return .null
        case .int64(let i): return .int(i)
        case .double(let d): return ["d": .double(d)]
        case .string(let s): return .string(s)
        }
    }

    static func value(_ json: JSONValue) -> DatabaseValue {
        switch json {
        case .int(let i): return i.databaseValue
        case .double(let d): return d.databaseValue
        case .string(let s): return s.databaseValue
        case .object(let o):
            // A double kept as one even when it is integral (the JSON writer drops ".0").
            if case .double(let d)? = o["d"] { return d.databaseValue }
            if case .int(let i)? = o["d"] { return Double(i).databaseValue }
            return .null
        default: return .null
        }
    }

    func encode(scope: String, secret: StoreSecret) -> String {
        let payload: JSONObject = ["p": .int(Int64(page)), "r": .int(rowid), "v": .array(sortValues.map(Self.json))]
        let body = Data(JSONValue.object(payload).serialized()).base64URLEncoded
        return body + "." + secret.sign(scope + "|" + body)
    }

    static func decode(_ text: String, scope: String, secret: StoreSecret) throws -> Cursor {
        let invalid = DataSourceError.invalidParameter(
            "cursor", value: .string(text), reason: "not a cursor for this data source, sort, order and filter")
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, secret.verify(scope + "|" + parts[0], signature: String(parts[1])),
            let data = Data(base64URLEncoded: String(parts[0])),
            let payload = try? JSONParser.parse(Array(data)),
            case .int(let page)? = payload["p"], case .int(let rowid)? = payload["r"],
            case .array(let values)? = payload["v"]
        else { throw invalid }
        guard (1...Int64(Pagination.maxPage)).contains(page) else { throw invalid }
        return Cursor(page: Int(page), sortValues: values.map(Self.value), rowid: rowid)
    }
}

/// Compiles a checked filter to SQL over the `c0…cN` columns. Every value is a bound
/// parameter; only column positions and fixed operator text are written into the SQL.
enum FilterSQL {
    static let groupSize = 64

    static func group(_ terms: [String], connective: String) -> String {
        guard terms.count > groupSize else { return "(" + terms.joined(separator: connective) + ")" }
        let groups = stride(from: 0, to: terms.count, by: groupSize).map { start in
            "(" + terms[start..<min(start + groupSize, terms.count)].joined(separator: connective) + ")"
        }
        return group(groups, connective: connective)
    }

    static func compile(_ expression: FilterExpression, columns: [DataColumn], arguments: inout [DatabaseValue]) -> String {
        func column(_ name: String) -> (String, ColumnType) {
            let index = columns.firstIndex { $0.name == name }!
            return ("c\(index)", columns[index].type)
        }
        func bind(_ literal: FilterLiteral, _ type: ColumnType) -> DatabaseValue {
            switch (literal, type) {
            case (.integer(let i), _): return i.databaseValue
            case (.number(let d), _): return d.databaseValue
            case (.bool(let b), _): return (b ? 1 : 0).databaseValue
            case (.string(let s), .date): return (FilterDates.date(s) ?? s).databaseValue
            case (.string(let s), .datetime): return (FilterDates.datetime(s) ?? 0).databaseValue
            case (.string(let s), _): return s.databaseValue
            case (.null, _): return .null
            }
        }
        switch expression {
        case .and, .or:
            // A run of one connective is written flat, `(a AND b AND c)`, so that its length
            // never adds parser depth; long runs are grouped to bound SQLite's expression depth.
            let isAnd = if case .and = expression { true } else { false }
            let terms = expression.chain(and: isAnd).map { compile($0, columns: columns, arguments: &arguments) }
            return group(terms, connective: isAnd ? " AND " : " OR ")
        case .not:
            // SQL semantics: a comparison with a missing value is unknown, and so is its NOT, so
            // neither `x > 1` nor `NOT x > 1` matches a null (IS NULL does).
            let (inner, negated) = expression.strippingNots
            let compiled = compile(inner, columns: columns, arguments: &arguments)
            return negated ? "(NOT \(compiled))" : compiled
        case .compare(let name, let op, let value):
            let (c, type) = column(name)
            arguments.append(bind(value, type))
            return "\(c) \(op.rawValue) ?"
        case .text(let name, let op, let value):
            let (c, _) = column(name)
            arguments.append(value.lowercased().databaseValue)
            switch op {
            case .contains: return "ds_contains(\(c), ?)"
            case .startsWith: return "ds_startswith(\(c), ?)"
            case .endsWith: return "ds_endswith(\(c), ?)"
            }
        case .isIn(let name, let values, let negated):
            let (c, type) = column(name)
            arguments.append(contentsOf: values.map { bind($0, type) })
            let list = Array(repeating: "?", count: values.count).joined(separator: ", ")
            return negated ? "(\(c) IS NOT NULL AND \(c) NOT IN (\(list)))" : "\(c) IN (\(list))"
        case .isNull(let name, let negated):
            let (c, _) = column(name)
            return negated ? "\(c) IS NOT NULL" : "\(c) IS NULL"
        case .truthy(let name):
            let (c, _) = column(name)
            return "\(c) = 1"
        }
    }
}
