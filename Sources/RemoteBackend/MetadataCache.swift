import Crypto
import DataSourceDomain
import Foundation
import GRDB
import JSONKit

/// A cached answer: the server's JSON as the agent read it, and when it was fetched.
struct CachedAnswer: Sendable {
    var json: JSONValue
    /// Unix seconds, with a fraction (maxAge compares to the millisecond).
    var fetchedAt: Double

    var age: Double { Date().timeIntervalSince1970 - fetchedAt }
    var timestamp: Timestamp { Timestamp(secondsSince1970: Int64(fetchedAt.rounded(.down))) }
}

/// `<store>/cache.sqlite`: the remote backend's answers to `list` and `get`, kept per server
/// and key (a hash of both, so a store used against two servers or with two keys never mixes
/// their answers, and no key is written to disk).
final class MetadataCache: Sendable {
    let queue: DatabaseQueue
    /// Hex SHA-256 of the base URL and the API key.
    let scope: String

    init(path: String, baseURL: String, apiKey: String?) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // Deleted metadata must not linger in free pages.
            try db.execute(sql: "PRAGMA secure_delete = ON")
        }
        queue = try DatabaseQueue(path: path, configuration: configuration)
        try Self.migrator.migrate(queue)
        let digest = SHA256.hash(data: Data((baseURL + "\u{0}" + (apiKey ?? "")).utf8))
        scope = digest.map { String(format: "%02x", $0) }.joined()
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }

    /// Cache reads and writes block (SQLite, perhaps waiting for another agent sharing the
    /// store), so they run here, never on a cooperative thread.
    static let work = DispatchQueue(label: "datasource-agent.cache", attributes: .concurrent)

    /// Runs a cache operation off the cooperative pool. A cache that fails is not a failure of
    /// the request: the answer is nil, as if nothing were cached.
    @discardableResult
    func off<T: Sendable>(_ body: @escaping @Sendable (MetadataCache) throws -> T) async -> T? {
        await withCheckedContinuation { continuation in
            Self.work.async { continuation.resume(returning: try? body(self)) }
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // One `list` answer per query (page, limit, status, contentType).
            try db.create(table: "listAnswer") { t in
                t.column("scope", .text).notNull()
                t.column("query", .text).notNull()
                t.column("body", .text).notNull()
                t.column("fetchedAt", .double).notNull()
                t.primaryKey(["scope", "query"])
            }
            // One `get` answer per data source.
            try db.create(table: "detailsAnswer") { t in
                t.column("scope", .text).notNull()
                t.column("datasourceId", .text).notNull()
                t.column("body", .text).notNull()
                t.column("fetchedAt", .double).notNull()
                t.primaryKey(["scope", "datasourceId"])
            }
        }
        return migrator
    }

    static func key(_ query: ListQuery) -> String {
        "page=\(query.page)&limit=\(query.limit)&status=\(query.status?.rawValue ?? "")&contentType=\(query.contentType ?? "")"
    }

    func list(_ query: ListQuery) throws -> CachedAnswer? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT body, fetchedAt FROM listAnswer WHERE scope = ? AND query = ?", arguments: [scope, Self.key(query)])
                .flatMap(Self.answer)
        }
    }

    func storeList(_ query: ListQuery, json: JSONValue, fetchedAt: Double) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO listAnswer (scope, query, body, fetchedAt) VALUES (?, ?, ?, ?)",
                arguments: [scope, Self.key(query), json.jsonText, fetchedAt])
        }
    }

    func details(_ id: DataSourceID) throws -> CachedAnswer? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT body, fetchedAt FROM detailsAnswer WHERE scope = ? AND datasourceId = ?", arguments: [scope, id.rawValue])
                .flatMap(Self.answer)
        }
    }

    func storeDetails(_ id: DataSourceID, json: JSONValue, fetchedAt: Double) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO detailsAnswer (scope, datasourceId, body, fetchedAt) VALUES (?, ?, ?, ?)",
                arguments: [scope, id.rawValue, json.jsonText, fetchedAt])
        }
    }

    /// Forgets a data source (deleted, or found gone) and every list answer, which may name it.
    func forget(_ id: DataSourceID) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM detailsAnswer WHERE scope = ? AND datasourceId = ?", arguments: [scope, id.rawValue])
            try db.execute(sql: "DELETE FROM listAnswer WHERE scope = ?", arguments: [scope])
        }
    }

    /// Forgets every list answer (a source appeared or changed status).
    func forgetLists() throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM listAnswer WHERE scope = ?", arguments: [scope]) }
    }

    private static func answer(_ row: Row) -> CachedAnswer? {
        let body: String = row["body"]
        guard let json = try? JSONParser.parse(body) else { return nil }
        return CachedAnswer(json: json, fetchedAt: row["fetchedAt"])
    }
}
