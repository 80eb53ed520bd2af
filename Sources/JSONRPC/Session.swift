import Dispatch
import Foundation
import JSONKit
import Logging
import Synchronization

/// What the owner of a session (the service) provides: the answer to `initialize`, the
/// method table, and a hook for notifications the transport does not handle itself.
public protocol SessionDelegate: AnyObject, Sendable {
    var methods: MethodTable { get }
    /// Methods a client may call before `initialize` (MCP allows `ping`).
    var methodsAllowedBeforeInitialize: Set<String> { get }
    func initialize(params: JSONValue?, context: RequestContext) async throws -> RawJSON
    func didReceiveNotification(method: String, params: JSONValue?, session: Session)
    func sessionWillClose(_ session: Session)
}

public enum LifecycleState: Sendable, Equatable {
    case uninitialized
    case running
    case shutDown
}

/// One JSON-RPC conversation over one stream: it routes each incoming message, enforces the
/// lifecycle, runs handlers concurrently, and writes every answer exactly once.
public final class Session: Sendable {
    public let output: OutputChannel
    public let logger: Logger
    private let delegateBox: Mutex<(any SessionDelegate)?>
    private let state = Mutex(SessionState())
    private let inFlightGroup = DispatchGroup()
    /// Called when the client sends `exit`, with the exit code the lifecycle prescribes.
    private let onExit: @Sendable (Int32) -> Void
    let parentWatch = Mutex<TimerBox?>(nil)

    func requestExit(code: Int32) { onExit(code) }

    struct SessionState {
        var lifecycle: LifecycleState = .uninitialized
        var framing: Framing = .newlineDelimited
        var nextSerial: UInt64 = 0
        var inFlight: [UInt64: InFlightRequest] = [:]
        var serialsByID: [JSONValue: UInt64] = [:]
    }

    struct InFlightRequest {
        var id: JSONValue
        var task: Task<Void, Never>?
        var sink: ResponseSink
    }

    public init(output: OutputChannel, logger: Logger, onExit: @escaping @Sendable (Int32) -> Void) {
        self.output = output
        self.logger = logger
        self.onExit = onExit
        self.delegateBox = Mutex(nil)
    }

    public func attach(_ delegate: any SessionDelegate) {
        delegateBox.withLock { $0 = delegate }
    }

    var delegate: (any SessionDelegate)? { delegateBox.withLock { $0 } }

    public var lifecycle: LifecycleState { state.withLock { $0.lifecycle } }
    public var framing: Framing { state.withLock { $0.framing } }

    // MARK: Incoming

    /// Handles one framed event. Called from the reader in stream order, so lifecycle
    /// transitions happen in the order the client sent them.
    public func receive(_ event: FramedEvent, framing: Framing) {
        state.withLock { $0.framing = framing }
        switch event {
        case .message(let bytes):
            receiveMessage(bytes)
        case .oversized(let declared):
            var data: JSONObject = ["reason": "message exceeds the size cap and was skipped"]
            if let declared { data["size"] = .int(Int64(declared)) }
            writeResponse(id: .null, outcome: .failure(JSONRPCError(
                code: JSONRPCError.invalidRequestCode, message: "Message too large", data: .object(data))))
        case .malformedHeader(let reason):
            writeResponse(id: .null, outcome: .failure(.parseError("malformed header: \(reason)")))
        }
    }

    private func receiveMessage(_ bytes: [UInt8]) {
        let message: JSONValue
        do {
            message = try JSONParser.parse(bytes)
        } catch {
            writeResponse(id: .null, outcome: .failure(.parseError(error.description)))
            return
        }
        if case .array(let elements) = message {
            receiveBatch(elements)
        } else {
            route(message, sink: ResponseSink { [self] id, outcome in writeResponse(id: id, outcome: outcome) })
        }
    }

    private func receiveBatch(_ elements: [JSONValue]) {
        guard !elements.isEmpty else {
            writeResponse(id: .null, outcome: .failure(.invalidRequest("empty batch")))
            return
        }
        let collector = BatchCollector(expected: elements.count) { [self] responses in
            guard !responses.isEmpty else { return }
            var writer = JSONWriter()
            writer.byte(0x5B)
            for (index, response) in responses.enumerated() {
                if index > 0 { writer.byte(0x2C) }
                writer.raw(response)
            }
            writer.byte(0x5D)
            send(writer.bytes)
        }
        for element in elements {
            route(element, sink: ResponseSink(drop: { collector.skip() }) { [self] id, outcome in
                collector.add(responseBytes(id: id, outcome: outcome))
            }, batch: collector)
        }
    }

    /// Validates one message object and dispatches it.
    private func route(_ message: JSONValue, sink: ResponseSink, batch: BatchCollector? = nil) {
        guard case .object(let object) = message else {
            sink.deliver(id: .null, .failure(.invalidRequest("a message must be an object")))
            return
        }
        let id = object["id"]
        let idIsValid: Bool = {
            switch id {
            case nil, .string?, .int?, .double?, .null?: return true
            default: return false
            }
        }()
        let replyID: JSONValue = idIsValid ? (id ?? .null) : .null
        guard object["jsonrpc"] == .string("2.0") else {
            sink.deliver(id: replyID, .failure(.invalidRequest("jsonrpc must be \"2.0\"")))
            return
        }
        guard idIsValid else {
            sink.deliver(id: .null, .failure(.invalidRequest("id must be a string, a number or null")))
            return
        }
        guard case .string(let method)? = object["method"] else {
            if object["method"] == nil, object["result"] != nil || object["error"] != nil {
                // A response to a request we never send; nothing to answer.
                batch?.skip()
                return
            }
            sink.deliver(id: replyID, .failure(.invalidRequest("method must be a string")))
            return
        }
        // `"params": null` is read as absent: strict JSON-RPC forbids it, but LSP clients (pygls's
        // `send_request_async("shutdown", None)`) send it for parameterless requests.
        let params = object["params"] == .null ? nil : object["params"]
        if let params {
            switch params {
            case .object, .array: break
            default:
                if id == nil { batch?.skip(); return }
                sink.deliver(id: replyID, .failure(.invalidRequest("params must be an object or an array")))
                return
            }
        }
        if let id {
            dispatchRequest(id: id, method: method, params: params, sink: sink)
        } else {
            batch?.skip()
            handleNotification(method: method, params: params)
        }
    }

    private func handleNotification(method: String, params: JSONValue?) {
        switch method {
        case "exit":
            let code: Int32 = lifecycle == .shutDown ? 0 : 1
            onExit(code)
        case "$/cancelRequest":
            if let id = params?["id"] { cancel(id: id, answer: true) }
        case "notifications/cancelled":
            // MCP: the cancelled request gets no response at all.
            if let id = params?["requestId"] { cancel(id: id, answer: false) }
        default:
            guard lifecycle != .uninitialized else { return }
            delegate?.didReceiveNotification(method: method, params: params, session: self)
        }
    }

    private func dispatchRequest(id: JSONValue, method: String, params: JSONValue?, sink: ResponseSink) {
        guard let delegate else {
            sink.deliver(id: id, .failure(.internalError("no service attached")))
            return
        }
        let lifecycle = lifecycle
        let handler: MethodTable.Handler
        if method == "initialize" {
            guard lifecycle == .uninitialized else {
                sink.deliver(id: id, .failure(.invalidRequest(
                    lifecycle == .shutDown ? "server is shut down" : "server is already initialized")))
                return
            }
            state.withLock { $0.lifecycle = .running }
            handler = { params, context in try await delegate.initialize(params: params, context: context) }
        } else {
            switch lifecycle {
            case .uninitialized where !delegate.methodsAllowedBeforeInitialize.contains(method):
                sink.deliver(id: id, .failure(.serverNotInitialized))
                return
            case .shutDown:
                sink.deliver(id: id, .failure(.invalidRequest("server is shut down")))
                return
            default:
                break
            }
            if method == "shutdown" {
                state.withLock { $0.lifecycle = .shutDown }
                sink.deliver(id: id, .success(RawJSON(bytes: Array("null".utf8))))
                return
            }
            guard let found = delegate.methods.handler(for: method) else {
                let suggestion = Suggestions.closest(to: method, in: delegate.methods.methodNames)
                sink.deliver(id: id, .failure(.methodNotFound(method, suggestion: suggestion)))
                return
            }
            handler = found
        }
        let serial = state.withLock { state -> UInt64 in
            state.nextSerial += 1
            state.inFlight[state.nextSerial] = InFlightRequest(id: id, task: nil, sink: sink)
            state.serialsByID[id] = state.nextSerial
            return state.nextSerial
        }
        if method == "initialize", case .int(let pid)? = params?["processId"] { watchParent(pid: pid_t(truncatingIfNeeded: pid)) }
        let context = RequestContext(id: id, method: method, session: self, progress: ProgressReporter(params: params, session: self))
        inFlightGroup.enter()
        let task = Task { [self] in
            let outcome: Result<RawJSON, JSONRPCError>
            do {
                outcome = .success(try await handler(params, context))
            } catch let error as JSONRPCError {
                outcome = .failure(error)
            } catch is CancellationError {
                outcome = .failure(.requestCancelled)
            } catch {
                logger.error("handler for \(method) failed: \(error)")
                // The error's own text may hold internals (paths, SQL); it went to the log.
                outcome = .failure(.internalError("the request failed; the agent's log has the cause"))
            }
            finish(serial: serial, outcome: outcome)
        }
        state.withLock { state in
            if state.inFlight[serial] != nil { state.inFlight[serial]?.task = task }
        }
    }

    /// Delivers a handler's outcome unless the request was already answered by a cancellation.
    private func finish(serial: UInt64, outcome: Result<RawJSON, JSONRPCError>) {
        let entry = state.withLock { state -> InFlightRequest? in
            guard let entry = state.inFlight.removeValue(forKey: serial) else { return nil }
            if state.serialsByID[entry.id] == serial { state.serialsByID[entry.id] = nil }
            return entry
        }
        entry?.sink.deliver(id: entry!.id, outcome)
        inFlightGroup.leave()
    }

    private func cancel(id: JSONValue, answer: Bool) {
        let entry = state.withLock { state -> InFlightRequest? in
            guard let serial = state.serialsByID.removeValue(forKey: id) else { return nil }
            return state.inFlight.removeValue(forKey: serial)
        }
        guard let entry else { return }
        entry.task?.cancel()
        if answer {
            entry.sink.deliver(id: entry.id, .failure(.requestCancelled))
        } else {
            entry.sink.drop()
        }
    }

    // MARK: Outgoing

    /// Sends a notification to this session's client.
    public func notify(method: String, params: JSONValue) {
        notify(method: method, rawParams: params.serialized())
    }

    public func notify(method: String, rawParams: [UInt8]) {
        var writer = JSONWriter(capacity: rawParams.count + 64)
        writer.raw("{\"jsonrpc\":\"2.0\",\"method\":")
        writer.string(method)
        writer.raw(",\"params\":")
        writer.raw(rawParams)
        writer.byte(0x7D)
        send(writer.bytes)
    }

    private func responseBytes(id: JSONValue, outcome: Result<RawJSON, JSONRPCError>) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"jsonrpc\":\"2.0\",\"id\":")
        writer.value(id)
        switch outcome {
        case .success(let result):
            writer.raw(",\"result\":")
            writer.raw(result.bytes)
        case .failure(let error):
            writer.raw(",\"error\":")
            writer.value(error.jsonValue)
        }
        writer.byte(0x7D)
        return writer.bytes
    }

    private func writeResponse(id: JSONValue, outcome: Result<RawJSON, JSONRPCError>) {
        send(responseBytes(id: id, outcome: outcome))
    }

    private func send(_ body: [UInt8]) {
        output.write(framing.frame(body))
    }

    /// Blocks until every request received so far has been answered and written; false when
    /// the timeout came first.
    @discardableResult
    public func drain(timeout: DispatchTime = .distantFuture) -> Bool {
        let finished = inFlightGroup.wait(timeout: timeout) == .success
        output.flush()
        return finished
    }

    public func cancelAll() {
        let tasks = state.withLock { $0.inFlight.values.compactMap(\.task) }
        tasks.forEach { $0.cancel() }
    }

    public func close() {
        delegate?.sessionWillClose(self)
    }
}

/// Where one request's answer goes: straight to the stream, or into its batch.
struct ResponseSink: Sendable {
    let write: @Sendable (JSONValue, Result<RawJSON, JSONRPCError>) -> Void
    let dropHandler: (@Sendable () -> Void)?

    init(
        drop: (@Sendable () -> Void)? = nil,
        _ write: @escaping @Sendable (JSONValue, Result<RawJSON, JSONRPCError>) -> Void
    ) {
        self.write = write
        self.dropHandler = drop
    }

    func deliver(id: JSONValue, _ outcome: Result<RawJSON, JSONRPCError>) { write(id, outcome) }
    func drop() { dropHandler?() }
}

/// Gathers the answers of one batch and writes them as one array once every element is done.
final class BatchCollector: Sendable {
    private let state: Mutex<(remaining: Int, responses: [[UInt8]])>
    private let complete: @Sendable ([[UInt8]]) -> Void

    init(expected: Int, complete: @escaping @Sendable ([[UInt8]]) -> Void) {
        state = Mutex((expected, []))
        self.complete = complete
    }

    func add(_ response: [UInt8]) { settle(response) }
    func skip() { settle(nil) }

    private func settle(_ response: [UInt8]?) {
        let done = state.withLock { state -> [[UInt8]]? in
            if let response { state.responses.append(response) }
            state.remaining -= 1
            return state.remaining == 0 ? state.responses : nil
        }
        if let done { complete(done) }
    }
}

extension Session {
    /// LSP's `processId`: when the editor that spawned us dies without closing our stdin,
    /// nobody would ever reap us, so poll for the process and leave with it.
    func watchParent(pid: pid_t) {
        guard pid > 0 else { return }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + .milliseconds(250), repeating: .milliseconds(250))
        timer.setEventHandler { [self] in
            if kill(pid, 0) != 0 && errno == ESRCH {
                timer.cancel()
                logger.info("parent process \(pid) is gone; exiting")
                requestExit(code: 1)
            }
        }
        timer.resume()
        parentWatch.withLock { $0 = TimerBox(timer: timer) }
    }
}

/// Keeps a dispatch timer alive; dispatch sources are thread-safe but not marked Sendable.
final class TimerBox: @unchecked Sendable {
    let timer: any DispatchSourceTimer
    init(timer: any DispatchSourceTimer) { self.timer = timer }
}
