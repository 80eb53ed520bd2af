import DataSourceDomain
import Foundation

/// Signs and verifies download links with the store secret: HMAC-SHA256 over the method, the
/// path and the expiry, compared in constant time. The only place that knows what is signed.
public struct DownloadSigner: Sendable {
    let secret: StoreSecret

    public init(secret: StoreSecret) { self.secret = secret }

    public func url(origin: String, id: DataSourceID, expiresAt: Timestamp) -> String {
        url(origin: origin, path: DownloadLinkShape.path(for: id), query: nil, expiresAt: expiresAt)
    }

    /// A link to `path`; `query` (URL-safe text, an export's query) is signed with it.
    public func url(origin: String, path: String, query: String?, expiresAt: Timestamp) -> String {
        let expires = expiresAt.secondsSince1970
        let signature = secret.sign(Self.message(method: "GET", path: path, expires: expires, query: query))
        let q = query.map { "\(DownloadLinkShape.queryParameter)=\($0)&" } ?? ""
        return "\(origin)\(path)?\(q)\(DownloadLinkShape.expiresParameter)=\(expires)&\(DownloadLinkShape.signatureParameter)=\(signature)"
    }

    /// The origin a listener serves links on; a listener that cannot start is ACCESS_DENIED
    /// with its reason (every store says it the same way).
    public static func origin(of server: any DownloadOrigin) async throws -> String {
        do {
            return try await server.origin()
        } catch {
            throw DataSourceError(.accessDenied, details: ["reason": .string("download links are not available: \(error)")])
        }
    }

    /// The signed link of an export of `query` from the source named `sourceFileName`.
    public func exportLink(origin: String, query: DataQuery, format: ExportFormat, expiresIn seconds: Int, sourceFileName: String) -> DownloadLink {
        let expiresAt = Timestamp.now().adding(seconds: Int64(seconds))
        let spec = ExportSpec(query: query, format: format)
        let link = url(origin: origin, path: DownloadLinkShape.exportPath(for: query.datasourceId), query: spec.encoded, expiresAt: expiresAt)
        return DownloadLink(downloadUrl: link, fileName: spec.fileName(for: sourceFileName), expiresAt: expiresAt, fileSize: nil)
    }

    public enum Verdict: Equatable {
        case valid
        case invalid(reason: String)
    }

    /// Signature first (constant-time), then expiry. Only the exact text `url` writes is
    /// accepted: an expiry spelled another way (`+…`, `007`, ` 7`) or a signature with padding or
    /// the standard alphabet's `+` and `/` is answered exactly as a tampered link is.
    public func verify(method: String, path: String, query: String? = nil, expires: String?, signature: String?, now: Timestamp = .now()) -> Verdict {
        guard let expires, let signature else {
            return .invalid(reason: "the link is missing its signature or expiry")
        }
        let tampered = Verdict.invalid(reason: "the link's signature is invalid")
        guard let expiry = Self.canonicalSeconds(expires) else { return tampered }
        guard secret.verify(Self.message(method: method, path: path, expires: expiry, query: query), signature: signature) else {
            return tampered
        }
        guard now.secondsSince1970 <= expiry else { return .invalid(reason: "the link has expired") }
        return .valid
    }

    /// Decimal digits with no sign, no leading zero and no whitespace, as `url` writes them.
    static func canonicalSeconds(_ text: String) -> Int64? {
        guard let first = text.utf8.first, first != UInt8(ascii: "0") || text.utf8.count == 1,
            text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        return Int64(text)
    }

    private static func message(method: String, path: String, expires: Int64, query: String?) -> String {
        query.map { "\(method)\n\(path)\n\(expires)\n\($0)" } ?? "\(method)\n\(path)\n\(expires)"
    }
}
