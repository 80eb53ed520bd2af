@preconcurrency import Crypto
import Foundation

/// The store secret (32 random bytes in `datasource_agent.store_secret`, made by the first
/// migration), shared by every agent on the database: it signs cursors, so a cursor made by
/// one agent is accepted by another.
struct StoreSecretKey: @unchecked Sendable {
    let key: SymmetricKey

    init(bytes: [UInt8]) { key = SymmetricKey(data: bytes) }

    func sign(_ message: String) -> String {
        Base64URL.encode(Array(HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: key)))
    }

    /// Constant-time check of a signature made by `sign`.
    func verify(_ message: String, signature: String) -> Bool {
        guard let provided = Base64URL.decode(signature) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(provided, authenticating: Data(message.utf8), using: key)
    }
}

enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> [UInt8]? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map { Array($0) }
    }
}
