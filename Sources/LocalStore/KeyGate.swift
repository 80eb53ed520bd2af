import Crypto
import DataSourceDomain
import Dispatch
import Foundation
import Synchronization

/// A stored key as the gate sees it: only the SHA-256 of the key is ever kept.
public struct StoredKeyHash: Sendable {
    public var id: String
    public var scope: KeyScope
    public var keyHash: String
    public var lastUsedAt: Int64?

    public init(id: String, scope: KeyScope, keyHash: String, lastUsedAt: Int64?) {
        self.id = id
        self.scope = scope
        self.keyHash = keyHash
        self.lastUsedAt = lastUsedAt
    }
}

/// What a presented key may do (§10), whichever store keeps the keys: the one place that makes
/// keys, hashes them and compares them.
public final class KeyGate: Sendable {
    /// How long the keys read are trusted before they are read again: a key made, or revoked,
    /// by another process takes effect within this time.
    static let cacheLifetime: UInt64 = 250_000_000
    private let cache = Mutex<(keys: [StoredKeyHash], loadedAt: UInt64)?>(nil)

    public init() {}

    /// A new key, to be shown once, and the hash to store in its place.
    public static func makeKey() -> (key: String, hash: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = "dsa_" + Data(bytes).base64URLEncoded
        return (key, hash(key))
    }

    public static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Drops the keys read, so that the next check reads them again.
    public func forget() { cache.withLock { $0 = nil } }

    /// `load` reads the stored keys (at most every 250 ms); `recordUse` stores a key's last use,
    /// at most once a minute per key, off the caller's path.
    public func grant(
        forKey key: String?, load: () async throws -> [StoredKeyHash],
        recordUse: @escaping @Sendable (_ id: String, _ seconds: Int64) async -> Void
    ) async throws -> Grant {
        let now = DispatchTime.now().uptimeNanoseconds
        let cached = cache.withLock { cache -> [StoredKeyHash]? in
            guard let cache, now < cache.loadedAt &+ Self.cacheLifetime, now >= cache.loadedAt else { return nil }
            return cache.keys
        }
        let keys: [StoredKeyHash]
        if let cached {
            keys = cached
        } else {
            keys = try await load()
            cache.withLock { $0 = (keys, now) }
        }
        guard !keys.isEmpty else { return .open }
        guard let key, !key.isEmpty else { return .refused }
        let presented = Array(Self.hash(key).utf8)
        // Every stored hash is compared in full, so timing says nothing of which matched.
        var match: StoredKeyHash?
        for stored in keys where Self.constantTimeEqual(Array(stored.keyHash.utf8), presented) { match = stored }
        guard let match else { return .refused }
        let seconds = Timestamp.now().secondsSince1970
        if match.lastUsedAt.map({ seconds - $0 >= 60 }) ?? true {
            forget()
            Task.detached { await recordUse(match.id, seconds) }
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
