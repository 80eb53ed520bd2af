import DataSourceDomain
import JSONKit
import JSONRPC

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
        table.register("datasources/get", params: GetParams.self, description: MethodDocs.get) { params, _ in
            try await mappingErrors {
                let id = try Validate.datasourceId(params.datasourceId)
                return try await backend.details(of: id, maxAge: try Validate.maxAge(params.maxAge)).json
            }
        }
    }
}
