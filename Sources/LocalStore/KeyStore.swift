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

extension APIKeyRecord {
    var stored: StoredKeyHash { StoredKeyHash(id: id, scope: scope, keyHash: keyHash, lastUsedAt: lastUsedAt) }
}

/// Keys (§10): made by `keys create`, shown once, stored as hashes in the catalog.
extension LocalBackend {
    /// A new key of this scope; the key itself is returned once and never stored.
    public func createKey(scope: KeyScope, name: String?) throws -> (info: APIKeyInfo, key: String) {
        let made = KeyGate.makeKey()
        let record = APIKeyRecord(
            id: String(UUID().uuidString.lowercased().prefix(8)), name: name, scope: scope, keyHash: made.hash,
            createdAt: Timestamp.now().secondsSince1970, lastUsedAt: nil)
        try catalog.pool.write { db in try record.insert(db) }
        return (record.info, made.key)
    }

    public func listKeys() throws -> [APIKeyInfo] {
        try catalog.pool.read { db in try APIKeyRecord.order(Column("createdAt"), Column.rowID).fetchAll(db) }.map(\.info)
    }

    /// Removes a key; false when there is no key with this id.
    public func revokeKey(id: String) throws -> Bool {
        try catalog.pool.write { db in try APIKeyRecord.deleteOne(db, key: id) }
    }

    public func grant(forKey key: String?) async throws -> Grant {
        try await keyGate.grant(
            forKey: key,
            load: { [self] in
                try await offCooperativePool { [self] in
                    try storing { try catalog.pool.read { db in try APIKeyRecord.fetchAll(db) } }
                }.map(\.stored)
            },
            recordUse: { [self] id, seconds in
                _ = try? await offCooperativePool { [self] in
                    try catalog.pool.write { db in
                        try db.execute(sql: "UPDATE apiKey SET lastUsedAt = ? WHERE id = ?", arguments: [seconds, id])
                    }
                }
            })
    }
}
