import AgentService
import DataSourceDomain
import Dispatch
import FuzzSupport
import JSONKit
import JSONRPC
import Logging
import Synchronization

/// The stdio face end to end but for the pipes: the input is what a client writes to stdin,
/// cut into reads of an input-chosen size, framed (either framing), decoded as JSON-RPC and
/// dispatched to the real service over a backend that stores nothing. Nothing may crash,
/// every request must be answered within the drain, and every frame written must be one
/// JSON value framed as the client framed its first message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    runSession(bytes(data, size))
    leakCheck.inputFinished()
    return 0
}

/// A session ends on other threads a moment after its last answer (see PeriodicLeakCheck).
/// libFuzzer calls the target from one thread, one input at a time.
nonisolated(unsafe) var leakCheck = PeriodicLeakCheck(every: 500)

/// One client session over `input`, and the checks of what it wrote.
func runSession(_ input: [UInt8]) {
    let written = Mutex<[[UInt8]]>([])
    let session = Session(
        output: OutputChannel(sink: { frame in written.withLock { $0.append(frame) } }),
        logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }),
        onExit: { _ in })
    session.attach(service.makeSessionDelegate(for: session))

    var framer = MessageFramer(maxMessageBytes: 4096)
    let readSize = 1 + Int(input.first ?? 0) % 61
    var offset = 0
    while offset < input.count {
        let end = min(input.count, offset + readSize)
        let events = input[offset..<end].withUnsafeBufferPointer { framer.consume($0) }
        for event in events { session.receive(event, framing: framer.framing ?? .newlineDelimited) }
        offset = end
    }
    session.stopAdmitting()
    guard session.drain(timeout: .now() + .seconds(10)) else { violated("requests still unanswered 10 s after the input ended") }
    session.cancelAll()
    session.close()

    let framing = framer.framing ?? .newlineDelimited
    for frame in written.withLock({ $0 }) {
        let body: ArraySlice<UInt8>
        switch framing {
        case .newlineDelimited:
            guard frame.last == 0x0A else { violated("a newline-delimited frame without its newline") }
            body = frame.dropLast()
            if body.contains(0x0A) { violated("a newline inside a newline-delimited frame") }
        case .contentLength:
            guard let headerEnd = frame.firstRange(of: [0x0D, 0x0A, 0x0D, 0x0A]) else { violated("a frame without its header") }
            body = frame[headerEnd.upperBound...]
            let header = String(decoding: frame[..<headerEnd.lowerBound], as: UTF8.self)
            if header != "Content-Length: \(body.count)" { violated("header \(header) for a \(body.count)-byte body") }
        }
        if (try? JSONParser.parse(Array(body))) == nil { violated("a frame is not JSON: \(String(decoding: body, as: UTF8.self))") }
    }
}

/// The process's entry point (see FuzzSupport.runLibFuzzer).
@_cdecl("FuzzFrames_main")
public func fuzzFramesMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzFrames, flags: PeriodicLeakCheck.libFuzzerFlags)
}

/// One service for every session, as serve-http has one for all its connections.
let service = AgentService(
    backend: NoBackend(), configuration: ServiceConfiguration(version: "fuzz", backendName: "none", readOnly: false),
    logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))

/// A backend with no data sources: the fuzzer exercises decoding and dispatch, not a store.
struct NoBackend: DataSourceBackend {
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
    func query(_ request: SQLQuery) async throws -> SQLQueryResult { throw SQLQuery.invalid("this backend stores nothing") }
    func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary {
        throw DataSourceError.invalidParameter("path", value: nil, reason: "this backend stores nothing")
    }
    func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken { ObserverToken(rawValue: 1) }
    func removeObserver(_ token: ObserverToken) {}
}
