import DataSourceDomain
import JSONKit
import JSONRPC
import Synchronization

extension ServiceSession {
    /// The `datasources/*` methods of §4. Each is: decode params, validate, call the backend,
    /// return its JSON.
    static func registerDataSourceMethods(in table: inout MethodTable, service: AgentService) {
        let backend = service.backend
        table.register("datasources/list", params: ListParams.self, description: MethodDocs.list) { params, _ in
            try await mappingErrors {
                let query = try params.query()
                return try await backend.list(query).json
            }
        }
        table.register("datasources/upload", params: UploadParams.self, description: MethodDocs.upload) { params, context in
            try await mappingErrors {
                guard !service.configuration.readOnly else {
                    throw DataSourceError(.accessDenied, details: ["reason": "the agent runs with --read-only"])
                }
                let request = try params.request()
                let progress = context.progress.map(UploadProgress.init)
                return JSONValue.object(try await backend.upload(request, progress: progress?.handler).jsonObject)
            }
        }
        table.register("datasources/data", params: DataParams.self, description: MethodDocs.data) { params, _ in
            try await mappingErrors {
                RawJSON(bytes: try await backend.data(try params.query()).jsonBytes())
            }
        }
        table.register("datasources/delete", params: DeleteParams.self, description: MethodDocs.delete) { params, _ in
            try await mappingErrors {
                guard !service.configuration.readOnly else {
                    throw DataSourceError(.accessDenied, details: ["reason": "the agent runs with --read-only"])
                }
                return try await backend.delete(try Validate.datasourceId(params.datasourceId)).json
            }
        }
        table.register("datasources/download", params: DownloadParams.self, description: MethodDocs.download) { params, _ in
            try await mappingErrors {
                let id = try Validate.datasourceId(params.datasourceId)
                return try await backend.downloadLink(for: id, expiresIn: try params.expiry()).json
            }
        }
        table.register("datasources/get", params: GetParams.self, description: MethodDocs.get) { params, _ in
            try await mappingErrors {
                let id = try Validate.datasourceId(params.datasourceId)
                return try await backend.details(of: id, maxAge: try Validate.maxAge(params.maxAge)).json
            }
        }
    }
}

/// Turns an upload's processing progress into `$/progress` (or MCP progress) notifications:
/// begin at once, a report per 5 % step, end when processing finishes — after the upload's
/// response, since processing runs in the background.
final class UploadProgress: Sendable {
    let reporter: ProgressReporter
    private let lastPercent = Mutex<Int>(-1)

    init(_ reporter: ProgressReporter) {
        self.reporter = reporter
        reporter.begin(title: "Processing upload", percentage: 0)
    }

    var handler: ProgressHandler {
        { [self] fraction, message in
            let percent = Int(fraction * 100)
            if fraction >= 1 {
                reporter.end(message: message)
                return
            }
            let shouldReport = lastPercent.withLock { last in
                guard percent >= last + 5 else { return false }
                last = percent
                return true
            }
            if shouldReport { reporter.report(message: message, percentage: percent) }
        }
    }
}
