import Crypto
import DataSourceDomain
import Foundation
import Dispatch
import GRDB
import Synchronization

extension KeyScope: DatabaseValueConvertible {}

/// An API key's row: only the SHA-256 of the key is kept.
struct APIKeyRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "apiKey"
    var id: String
    var name: String?
    var scope: KeyScope
    var keyHash: String
    var createdAt: Int64
    var lastUsedAt: Int64?

    var info: APIKeyInfo {
        APIKeyInfo(
            id: id, name: name, scope: scope, createdAt: Timestamp(secondsSince1970: createdAt),
            lastUsedAt: lastUsedAt.map(Timestamp.init(secondsSince1970:)))
    }
}

extension Catalog {
    static func registerKeyMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-api-keys") { db in
            try db.create(table: "apiKey") { t in
                t.primaryKey("id", .text)
                t.column("name", .text)
                t.column("scope", .text).notNull().check(sql: "scope IN ('read', 'write')")
                t.column("keyHash", .text).notNull().unique()
                t.column("createdAt", .integer).notNull()
                t.column("lastUsedAt", .integer)
            }
        }
    }
}

/// Keys (§10): made by `keys create`, shown once, stored as hashes in the catalog.
extension LocalBackend {
    static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new key of this scope; the key itself is returned once and never stored.
    public func createKey(scope: KeyScope, name: String?) throws -> (info: APIKeyInfo, key: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = "dsa_" + Data(bytes).base64URLEncoded
        let record = APIKeyRecord(
            id: String(UUID().uuidString.lowercased().prefix(8)), name: name, scope: scope, keyHash: Self.hash(key),
            createdAt: Timestamp.now().secondsSince1970, lastUsedAt: nil)
        try catalog.pool.write { db in try record.insert(db) }
        return (record.info, key)
    }

    public func listKeys() throws -> [APIKeyInfo] {
        try catalog.pool.read { db in try APIKeyRecord.order(Column("createdAt"), Column.rowID).fetchAll(db) }.map(\.info)
    }

    /// Removes a key; false when there is no key with this id.
    public func revokeKey(id: String) throws -> Bool {
        try catalog.pool.write { db in try APIKeyRecord.deleteOne(db, key: id) }
    }

    /// How long the keys read from the catalog are trusted before they are read again: a key
    /// made, or revoked, by another process takes effect within this time.
    static let keyCacheLifetime: UInt64 = 250_000_000

    public func grant(forKey key: String?) async throws -> Grant {
        let now = DispatchTime.now().uptimeNanoseconds
        let cached = keyCache.withLock { cache -> [APIKeyRecord]? in
            guard let cache, now < cache.loadedAt &+ Self.keyCacheLifetime, now >= cache.loadedAt else { return nil }
            return cache.records
        }
        let records: [APIKeyRecord]
        if let cached {
            records = cached
        } else {
            records = try await offCooperativePool { [self] in
                try storing { try catalog.pool.read { db in try APIKeyRecord.fetchAll(db) } }
            }
            keyCache.withLock { $0 = (records, now) }
        }
        guard !records.isEmpty else { return .open }
        guard let key, !key.isEmpty else { return .refused }
        let presented = Array(Self.hash(key).utf8)
        // Every stored hash is compared in full, so timing says nothing of which matched.
        var match: APIKeyRecord?
        for record in records where Self.constantTimeEqual(Array(record.keyHash.utf8), presented) { match = record }
        guard let match else { return .refused }
        let seconds = Timestamp.now().secondsSince1970
        if match.lastUsedAt.map({ seconds - $0 >= 60 }) ?? true {
            keyCache.withLock { $0 = nil }
            Task.detached { [self] in
                _ = try? await offCooperativePool { [self] in
                    try catalog.pool.write { db in
                        try db.execute(sql: "UPDATE apiKey SET lastUsedAt = ? WHERE id = ?", arguments: [seconds, match.id])
                    }
                }
            }
        }
        return .scoped(match.scope)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
