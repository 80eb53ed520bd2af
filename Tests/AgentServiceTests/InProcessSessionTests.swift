import AgentService
import DataSourceDomain
import Foundation
import JSONKit
@testable import JSONRPC
import Logging
import Synchronization
import Testing

/// A backend with no data sources, for dispatch tests that need no store.
struct EmptyBackend: DataSourceBackend {
    func list(_ query: ListQuery) async throws -> ListPage {
        ListPage(dataSources: [], pagination: Pagination(page: query.page, limit: query.limit, total: 0))
    }
    func details(of id: DataSourceID, maxAge: Int?) async throws -> DataSourceDetails { throw DataSourceError.notFound(id.rawValue) }
    func data(_ query: DataQuery) async throws -> DataPage { throw DataSourceError.notFound(query.datasourceId.rawValue) }
    func delete(_ id: DataSourceID) async throws -> DeleteReceipt { throw DataSourceError.notFound(id.rawValue) }
    func downloadLink(for id: DataSourceID, expiresIn seconds: Int) async throws -> DownloadLink { throw DataSourceError.notFound(id.rawValue) }
    func exportLink(_ query: DataQuery, format: ExportFormat, expiresIn seconds: Int) async throws -> DownloadLink {
        throw DataSourceError.notFound(query.datasourceId.rawValue)
    }
    func grant(forKey key: String?) async throws -> Grant { .open }
    func query(_ request: SQLQuery) async throws -> SQLQueryResult {
        throw SQLQuery.invalid("this backend stores nothing")
    }
    func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary {
        throw DataSourceError.invalidParameter("path", value: nil, reason: "this backend stores nothing")
    }
    func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken { ObserverToken(rawValue: 1) }
    func removeObserver(_ token: ObserverToken) {}
}

/// A session over an in-memory connection: messages in through `send`, frames out into a
/// list, the exit code captured instead of ending the process.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

final class LocalConnection: Sendable {
    let session: Session
    private let frames = Locked<[JSONValue]>([])
    let exitCode = Locked<Int32?>(nil)

    init(readOnly: Bool = false) {
        let frames = self.frames
        let exitCode = self.exitCode
        session = Session(
            output: OutputChannel(sink: { bytes in
                let body = bytes.last == 0x0A ? Array(bytes.dropLast()) : bytes
                if let value = try? JSONParser.parse(body) { frames.withLock { $0.append(value) } }
            }),
            logger: Logger(label: "test"),
            onExit: { code in exitCode.withLock { $0 = code } })
        let service = AgentService(
            backend: EmptyBackend(), configuration: ServiceConfiguration(version: "test", backendName: "none", readOnly: readOnly),
            logger: Logger(label: "test"))
        session.attach(service.makeSessionDelegate(for: session))
    }

    /// The connection ends as a stdio session does: closed.
    deinit { session.close() }

    func send(_ message: JSONValue) {
        session.receive(.message(message.serialized()), framing: .newlineDelimited)
    }

    /// The response to `id`, waiting for it up to two seconds.
    func response(_ id: Int) async throws -> JSONValue {
        for _ in 0..<200 {
            session.output.flush()
            if let found = frames.withLock({ $0.first { $0["id"] == .int(Int64(id)) } }) { return found }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw CancellationError()
    }

    func call(_ id: Int, _ method: String, _ params: JSONValue = [:]) async throws -> JSONValue {
        send(["jsonrpc": "2.0", "id": .int(Int64(id)), "method": .string(method), "params": params])
        return try await response(id)
    }
}

@Suite struct InProcessSessionTests {
    /// A closed session and its delegate are freed (AddressSanitizer found every session
    /// leaked: the two held each other, and the delegate's handlers held the delegate).
    @Test func aClosedSessionIsFreed() async throws {
        weak var delegate: AnyObject?
        weak var session: Session?
        let answers = Locked(0)
        do {
            let opened = Session(output: OutputChannel(sink: { _ in answers.withLock { $0 += 1 } }), logger: Logger(label: "test"), onExit: { _ in })
            let service = AgentService(
                backend: EmptyBackend(), configuration: ServiceConfiguration(version: "test", backendName: "none", readOnly: false),
                logger: Logger(label: "test"))
            let attached = service.makeSessionDelegate(for: opened)
            opened.attach(attached)
            delegate = attached as AnyObject
            session = opened
            for (id, method) in [(1, "initialize"), (2, "tools/list"), (3, "datasources/list")] {
                let message: JSONValue = ["jsonrpc": "2.0", "id": .int(Int64(id)), "method": .string(method), "params": [:]]
                opened.receive(.message(message.serialized()), framing: .newlineDelimited)
            }
            for _ in 0..<200 where answers.withLock({ $0 }) < 3 {
                opened.output.flush()
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(answers.withLock { $0 } == 3)
            opened.close()
        }
        for _ in 0..<100 where delegate != nil || session != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(delegate == nil)
        #expect(session == nil)
    }

    @Test func lifecycleAndDispatchWithoutAProcess() async throws {
        let connection = LocalConnection()
        #expect(try await connection.call(1, "datasources/list")["error"]?["code"] == .int(-32002))
        #expect(try await connection.call(2, "initialize", ["processId": .null])["result"]?["serverInfo"]?["name"] == "datasource-agent")
        let listing = try await connection.call(3, "datasources/list", ["limit": 5])
        #expect(listing["result"]?["pagination"]?["limit"] == .int(5))
        let unknown = try await connection.call(4, "datasources/lsit")
        #expect(unknown["error"]?["data"]?["suggestion"] == "datasources/list")
        #expect(try await connection.call(5, "shutdown")["result"] == .null)
        #expect(try await connection.call(6, "datasources/list")["error"]?["code"] == .int(-32600))
        connection.send(["jsonrpc": "2.0", "method": "exit"])
        #expect(connection.exitCode.withLock { $0 } == 0)
    }

    /// Found by Fuzz/FuzzFrames (LeakSanitizer): the session held its delegate, the delegate
    /// held the session and its own MCP handlers, so no session was ever freed — one per
    /// `POST /mcp` request of serve-http.
    @Test func aClosedSessionAndItsDelegateAreFreed() async throws {
        weak var session: Session?
        weak var delegate: (any SessionDelegate)?
        do {
            let connection = LocalConnection()
            _ = try await connection.call(1, "initialize", ["protocolVersion": "2025-06-18", "capabilities": [:]])
            _ = try await connection.call(2, "tools/list")
            session = connection.session
            delegate = connection.session.delegate
            connection.session.stopAdmitting()
            connection.session.drain()
            connection.session.close()
            #expect(try await connection.call(3, "tools/list")["error"]?["code"] == .int(-32600))
        }
        for _ in 0..<100 where session != nil || delegate != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(session == nil)
        #expect(delegate == nil)
    }

    @Test func readOnlyGuardFollowsTheDescriptorsAccess() async throws {
        let connection = LocalConnection(readOnly: true)
        _ = try await connection.call(1, "initialize")
        let upload = try await connection.call(2, "datasources/upload", ["fileName": "a.csv", "content": "a\n1\n"])
        #expect(upload["error"]?["data"]?["code"] == "ACCESS_DENIED")
        let delete = try await connection.call(3, "datasources/delete", ["datasourceId": "550e8400-e29b-41d4-a716-446655440000"])
        #expect(delete["error"]?["data"]?["code"] == "ACCESS_DENIED")
        let list = try await connection.call(4, "datasources/list")
        #expect(list["result"] != nil)
    }

    @Test func everyFaceListsTheSameMethods() async throws {
        let connection = LocalConnection()
        let initialize = try await connection.call(1, "initialize")
        let methods = initialize["result"]?["capabilities"]?["datasources"]?["methods"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let document = AgentService.openRPCDocument(version: "test")
        let documented = document["methods"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(methods == documented && methods.count == DataSourceMethodCount.expected)
        let mcp = LocalConnection()
        _ = try await mcp.call(1, "initialize", ["protocolVersion": "2025-06-18", "capabilities": [:]])
        let tools = try await mcp.call(2, "tools/list")["result"]?["tools"]?.arrayValue ?? []
        #expect(tools.count == DataSourceMethodCount.expected)
        #expect(tools.allSatisfy { $0["inputSchema"]?["additionalProperties"] == .bool(false) })
    }
}

/// list, get, data, delete, download, upload, query, export: each appears once on every face.
enum DataSourceMethodCount {
    static let expected = 8
}
