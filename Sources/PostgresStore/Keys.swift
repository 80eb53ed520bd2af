@preconcurrency import Crypto
import DataSourceDomain
import Dispatch
import Foundation
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
    static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new key of this scope; the key itself is returned once and never stored.
    public func createKey(scope: KeyScope, name: String?) async throws -> (info: APIKeyInfo, key: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = "dsa_" + Base64URL.encode(bytes)
        let record = KeyRecord(
            id: String(UUID().uuidString.lowercased().prefix(8)), name: name, scope: scope, keyHash: Self.hash(key),
            createdAt: Timestamp.now().secondsSince1970, lastUsedAt: nil)
        _ = try await storing {
            try await client.query("""
                INSERT INTO datasource_agent.api_keys (id, name, scope, key_hash, created_at)
                VALUES (\(record.id), \(record.name), \(record.scope.rawValue), \(record.keyHash), \(record.createdAt))
                """, logger: logger)
        }
        keyCache.withLock { $0 = nil }
        return (record.info, key)
    }

    func keyRecords() async throws -> [KeyRecord] {
        var records: [KeyRecord] = []
        let rows = try await client.query(
            "SELECT id, name, scope, key_hash, created_at, last_used_at FROM datasource_agent.api_keys ORDER BY created_at, id", logger: logger)
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
        keyCache.withLock { $0 = nil }
        return removed
    }

    /// How long the keys read are trusted before they are read again: a key made, or revoked,
    /// by another agent takes effect within this time (as on a local store).
    static let keyCacheLifetime: UInt64 = 250_000_000

    public func grant(forKey key: String?) async throws -> Grant {
        let now = DispatchTime.now().uptimeNanoseconds
        let cached = keyCache.withLock { cache -> [KeyRecord]? in
            guard let cache, now < cache.loadedAt &+ Self.keyCacheLifetime, now >= cache.loadedAt else { return nil }
            return cache.records
        }
        let records: [KeyRecord]
        if let cached {
            records = cached
        } else {
            records = try await storing { try await keyRecords() }
            keyCache.withLock { $0 = (records, now) }
        }
        guard !records.isEmpty else { return .open }
        guard let key, !key.isEmpty else { return .refused }
        let presented = Array(Self.hash(key).utf8)
        // Every stored hash is compared in full, so timing says nothing of which matched.
        var match: KeyRecord?
        for record in records where Self.constantTimeEqual(Array(record.keyHash.utf8), presented) { match = record }
        guard let match else { return .refused }
        let seconds = Timestamp.now().secondsSince1970
        if match.lastUsedAt.map({ seconds - $0 >= 60 }) ?? true {
            keyCache.withLock { $0 = nil }
            Task.detached { [client, logger] in
                _ = try? await client.query(
                    "UPDATE datasource_agent.api_keys SET last_used_at = \(seconds) WHERE id = \(match.id)", logger: logger)
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
