import Hummingbird

extension RESTServer {
    /// The page's Content-Security-Policy: its own scripts, styles and connections only, no
    /// inline code, never framed.
    static let contentSecurityPolicy = [
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
        "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'",
    ].joined(separator: "; ")

    /// `/` and its assets (`WebAssets`, generated from `web/`): no key needed, the page asks
    /// for one. Served with the policy above and no caching beyond revalidation.
    func addPageRoutes(to router: Router<RESTRequestContext>) {
        for (path, file) in WebAssets.files {
            let bytes = Array(file.body.utf8)
            let etag = "\"\(Self.fnv1a(bytes))\""
            router.get(RouterPath(path)) { request, _ in
                var headers: HTTPFields = [
                    .contentType: file.contentType,
                    .cacheControl: "no-cache",
                    .eTag: etag,
                    .init("Content-Security-Policy")!: Self.contentSecurityPolicy,
                    .init("Referrer-Policy")!: "no-referrer",
                    .init("X-Frame-Options")!: "DENY",
                    .init("Cross-Origin-Opener-Policy")!: "same-origin",
                ]
                if request.headers[.ifNoneMatch] == etag {
                    return Response(status: .notModified, headers: headers)
                }
                headers[.contentLength] = String(bytes.count)
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
            }
        }
    }

    /// A 64-bit FNV-1a hash in hex (an ETag; not a security measure).
    static func fnv1a(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
