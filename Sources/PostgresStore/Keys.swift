import DataSourceDomain
import Dispatch
import Foundation
import LocalStore
import PostgresNIO
import Synchronization

/// A key's row in `datasource_agent.api_keys`: only the SHA-256 of the key is kept.
struct KeyRecord: Sendable {
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

/// Keys (§10) in the database, exactly as a local store keeps them in its catalog: made by
/// `keys create`, shown once, stored as hashes, shared by every agent and REST face.
extension PostgresBackend {
    /// A new key of this scope; the key itself is returned once and never stored.
    public func createKey(scope: KeyScope, name: String?) async throws -> (info: APIKeyInfo, key: String) {
        let made = KeyGate.makeKey()
        let record = KeyRecord(
            id: String(UUID().uuidString.lowercased().prefix(8)), name: name, scope: scope, keyHash: made.hash,
            createdAt: Timestamp.now().secondsSince1970, lastUsedAt: nil)
        _ = try await storing {
            try await client.query("""
                INSERT INTO datasource_agent.api_keys (id, name, scope, key_hash, created_at)
                VALUES (\(record.id), \(record.name), \(record.scope.rawValue), \(record.keyHash), \(record.createdAt))
                """, logger: logger)
        }
        keyGate.forget()
        return (record.info, made.key)
    }

    func keyRecords() async throws -> [KeyRecord] {
        var records: [KeyRecord] = []
        let rows = try await client.query(
            "SELECT id, name, scope, key_hash, created_at, last_used_at FROM datasource_agent.api_keys ORDER BY created_at, sequence", logger: logger)
        for try await (id, name, scope, hash, created, used) in rows.decode((String, String?, String, String, Int64, Int64?).self) {
            records.append(KeyRecord(id: id, name: name, scope: KeyScope(rawValue: scope) ?? .read, keyHash: hash, createdAt: created, lastUsedAt: used))
        }
        return records
    }

    public func listKeys() async throws -> [APIKeyInfo] {
        try await storing { try await keyRecords() }.map(\.info)
    }

    /// Removes a key; false when there is no key with this id.
    public func revokeKey(id: String) async throws -> Bool {
        let removed = try await storing {
            var removed = false
            for try await _ in try await client.query("DELETE FROM datasource_agent.api_keys WHERE id = \(id) RETURNING id", logger: logger) {
                removed = true
            }
            return removed
        }
        keyGate.forget()
        return removed
    }

    public func grant(forKey key: String?) async throws -> Grant {
        try await keyGate.grant(
            forKey: key,
            load: { [self] in
                try await storing { try await keyRecords() }.map { StoredKeyHash(id: $0.id, scope: $0.scope, keyHash: $0.keyHash, lastUsedAt: $0.lastUsedAt) }
            },
            recordUse: { [client, logger] id, seconds in
                _ = try? await client.query("UPDATE datasource_agent.api_keys SET last_used_at = \(seconds) WHERE id = \(id)", logger: logger)
            })
    }
}
