import JSONKit

/// What an API key may do (§10): `read` calls every method that only reads; `write` also
/// uploads and deletes.
public enum KeyScope: String, Sendable, CaseIterable, Codable {
    case read, write
}

/// What a caller may do, as the store decides from the key it presented.
public enum Grant: Sendable, Equatable {
    /// The store has no keys: the local user has full access.
    case open
    case scoped(KeyScope)
    /// The store has keys and none was presented, or this one is not among them.
    case refused
}

/// A key as `keys list` shows it (never the key itself, which is stored only as a hash).
public struct APIKeyInfo: Sendable, Equatable {
    public var id: String
    public var name: String?
    public var scope: KeyScope
    public var createdAt: Timestamp
    public var lastUsedAt: Timestamp?

    public init(id: String, name: String?, scope: KeyScope, createdAt: Timestamp, lastUsedAt: Timestamp?) {
        self.id = id
        self.name = name
        self.scope = scope
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
    }

    public var json: JSONValue {
        [
            "id": .string(id), "name": name.map { .string($0) } ?? .null, "scope": .string(scope.rawValue),
            "createdAt": .string(createdAt.iso8601), "lastUsedAt": lastUsedAt.map { .string($0.iso8601) } ?? .null,
        ]
    }
}
