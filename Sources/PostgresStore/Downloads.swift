import DataSourceDomain
import Foundation
import JSONKit
import LocalStore
import NIOCore
import PostgresNIO
import Synchronization

/// Download links of a PostgreSQL store: signed with the store secret that every agent on
/// the database shares, so any agent's listener serves a link any agent made, from the
/// original's chunks in the database, one chunk at a time.
extension PostgresBackend: DownloadAuthority {
    public func downloadLink(for id: DataSourceID, expiresIn seconds: Int) async throws -> DownloadLink {
        guard let record = try await storing({ try await catalog.record(id) }) else { throw DataSourceError.notFound(id.rawValue) }
        guard let server = downloadServer.withLock({ $0 }) else {
            throw DataSourceError(.accessDenied, details: ["reason": "download links are not available in this process"])
        }
        let origin = try await DownloadSigner.origin(of: server)
        let expiresAt = Timestamp.now().adding(seconds: Int64(seconds))
        let url = DownloadSigner(secret: secret).url(origin: origin, id: id, expiresAt: expiresAt)
        return DownloadLink(downloadUrl: url, fileName: record.fileName, expiresAt: expiresAt, fileSize: record.fileSize)
    }

    /// Connects the listener that serves download links (wired by the executable).
    public func attachDownloadServer(_ server: any DownloadOrigin) {
        downloadServer.withLock { $0 = server }
    }

    /// Signature first (constant-time), then expiry, then existence: a valid link to a
    /// deleted source is a 404, anything forged or stale a 403.
    public func authorize(method: String, path: String, expires: String?, signature: String?) async -> DownloadAuthorization {
        if case .invalid(let reason) = DownloadSigner(secret: secret).verify(method: method, path: path, expires: expires, signature: signature) {
            return .forbidden(reason: reason)
        }
        let idText = DownloadLinkShape.datasourceId(inPath: path) ?? ""
        guard let id = DataSourceID(idText), let record = try? await catalog.record(id) else { return .notFound(datasourceId: idText) }
        let client = self.client
        let logger = self.logger
        return .granted(DownloadableFile(path: "", fileName: record.fileName, contentType: record.contentType, size: record.fileSize) { range in
            Self.originalBytes(client: client, logger: logger, id: id, range: range)
        })
    }

    /// The bytes of `range` of an original, read chunk by chunk (`substring` of each chunk
    /// the range touches), so neither side holds the whole file.
    static func originalBytes(client: PostgresClient, logger: Logger, id: DataSourceID, range: ClosedRange<Int>) -> AsyncThrowingStream<[UInt8], any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var offset = range.lowerBound
                    while offset <= range.upperBound {
                        let chunk = offset / chunkBytes
                        let start = offset - chunk * chunkBytes
                        let length = min(chunkBytes - start, range.upperBound - offset + 1)
                        var bytes: [UInt8]?
                        for try await buffer in try await client.query("""
                            SELECT substring(bytes FROM \(Int32(start + 1)) FOR \(Int32(length))) FROM datasource_agent.originals
                            WHERE datasource_id = \(id.rawValue) AND chunk = \(Int32(chunk))
                            """, logger: logger).decode(ByteBuffer.self) { bytes = Array(buffer.readableBytesView) }
                        // Deleted while being served: the answer ends short, as a removed file's would.
                        guard let bytes, !bytes.isEmpty else { break }
                        continuation.yield(bytes)
                        offset += bytes.count
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Exports: the local store's link shape and page streaming (`ExportSpec`, `ExportPages`
    /// over this backend's `data`), the query signed with the link.
    public func exportLink(_ query: DataQuery, format: ExportFormat, expiresIn seconds: Int) async throws -> DownloadLink {
        guard let server = downloadServer.withLock({ $0 }) else {
            throw DataSourceError(.accessDenied, details: ["reason": "download links are not available in this process"])
        }
        // One row of the query now, so that a bad filter, sort or column is an error here.
        var probe = query
        probe.limit = 1
        probe.page = 1
        probe.cursor = nil
        _ = try await data(probe)
        guard let record = try await storing({ try await catalog.record(query.datasourceId) }) else {
            throw DataSourceError.notFound(query.datasourceId.rawValue)
        }
        let origin = try await DownloadSigner.origin(of: server)
        return DownloadSigner(secret: secret).exportLink(
            origin: origin, query: query, format: format, expiresIn: seconds, sourceFileName: record.fileName)
    }

    public func authorizeExport(path: String, query: String?, expires: String?, signature: String?) async -> ExportAuthorization {
        if case .invalid(let reason) = DownloadSigner(secret: secret).verify(
            method: "GET", path: path, query: query, expires: expires, signature: signature) {
            return .forbidden(reason: reason)
        }
        let idText = path.hasPrefix(DownloadLinkShape.exportPathPrefix) ? String(path.dropFirst(DownloadLinkShape.exportPathPrefix.count)) : ""
        guard let id = DataSourceID(idText), let query, let spec = ExportSpec(encoded: query, id: id),
            let record = try? await catalog.record(id)
        else { return .notFound(datasourceId: idText) }
        let pages = ExportPages(backend: self, spec: spec)
        let chunks = AsyncThrowingStream<[UInt8], any Error>(unfolding: { try await pages.next() })
        return .granted(ExportStream(fileName: spec.fileName(for: record.fileName), contentType: spec.format.contentType, chunks: chunks))
    }
}
