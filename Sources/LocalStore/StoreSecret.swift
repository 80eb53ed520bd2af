@preconcurrency import Crypto
import Foundation

/// The per-store key that signs download links and query cursors. Created on first use
/// with owner-only permissions; shared by every process using the store.
public struct StoreSecret: @unchecked Sendable {
    let key: SymmetricKey

    init(key: SymmetricKey) { self.key = key }

    /// A secret kept elsewhere (a PostgreSQL store keeps it in the database).
    public init(bytes: [UInt8]) { key = SymmetricKey(data: bytes) }

    static func loadOrCreate(at url: URL) throws -> StoreSecret {
        if let data = try? Data(contentsOf: url), data.count == 32 {
            return StoreSecret(key: SymmetricKey(data: data))
        }
        let fresh = SymmetricKey(size: .bits256)
        let bytes = fresh.withUnsafeBytes { Data($0) }
        // Write-then-link so that two processes racing to create it agree on one key.
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".secret.\(getpid()).\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: temporary.path, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        defer { try? FileManager.default.removeItem(at: temporary) }
        if link(temporary.path, url.path) != 0 && errno != EEXIST {
            throw CocoaError(.fileWriteUnknown)
        }
        guard let data = try? Data(contentsOf: url), data.count == 32 else { throw CocoaError(.fileReadCorruptFile) }
        return StoreSecret(key: SymmetricKey(data: data))
    }

    public func sign(_ message: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: key)
        return Data(mac).base64URLEncoded
    }

    /// Constant-time check of a signature made by `sign`.
    public func verify(_ message: String, signature: String) -> Bool {
        guard let provided = Data(base64URLEncoded: signature) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(provided, authenticating: Data(message.utf8), using: key)
    }
}

extension Data {
    public var base64URLEncoded: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Strict: the unpadded URL-safe alphabet only (no `=`, `+`, `/`, whitespace), and only the
    /// one spelling `base64URLEncoded` would write for these bytes, so that no second spelling
    /// of a signature, cursor or export query is ever accepted.
    public init?(base64URLEncoded text: String) {
        guard text.utf8.count % 4 != 1, text.utf8.allSatisfy(Self.isBase64URLByte) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let decoded = Data(base64Encoded: base64), decoded.base64URLEncoded == text else { return nil }
        self = decoded
    }

    private static func isBase64URLByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }
}
