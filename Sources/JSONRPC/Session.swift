import Dispatch
import Foundation
import JSONKit
import Logging
import Synchronization

/// What the owner of a session (the service) provides: the method table, the lifecycle
/// (which requests are admitted, what notifications do), and progress reporting. The session
/// itself knows JSON-RPC only.
public protocol SessionDelegate: AnyObject, Sendable {
    var methods: MethodTable { get }
    /// Decides what happens to a request before any handler runs. Called in stream order,
    /// so lifecycle transitions happen in the order the client sent them.
    func admit(request method: String, params: JSONValue?, session: Session) -> Admission
    /// Every notification but `$/cancelRequest`, in stream order.
    func didReceiveNotification(method: String, params: JSONValue?, session: Session)
    /// A reporter when the request's params carry a progress token the service understands.
    func progressReporter(for params: JSONValue?, session: Session) -> (any RequestProgress)?
    func sessionWillClose(_ session: Session)
    /// The session stops admitting requests (end of input, SIGTERM): long-lived requests
    /// should end now so that draining does not wait for them.
    func sessionWillStopAdmitting(_ session: Session)
}

extension SessionDelegate {
    public func sessionWillStopAdmitting(_ session: Session) {}
}

/// What the delegate decided about a request.
public enum Admission: Sendable {
    /// Run the method's handler from the table (or answer -32601 when there is none).
    case dispatch
    /// Answer at once with this result, running nothing.
    case answer(RawJSON)
    case reject(JSONRPCError)
}

/// One JSON-RPC conversation over one stream: it routes each incoming message, enforces the
/// delegate's admission, runs handlers concurrently, and writes every answer exactly once.
public final class Session: Sendable {
    public let output: OutputChannel
    public let logger: Logger
    private let delegateBox: Mutex<(any SessionDelegate)?>
    private let state = Mutex(SessionState())
    private let inFlightGroup = DispatchGroup()
    /// Ends the process (the owner of the stream decides how).
    private let onExit: @Sendable (Int32) -> Void

    /// Asks the owner of the stream to end the process with this code (the lifecycle's
    /// `exit`, or the parent process gone).
    public func requestExit(code: Int32) { onExit(code) }

    struct SessionState {
        /// Set once the process is stopping: later requests are answered with an error.
        var closing = false
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
            dispatchRequest(id: id, method: method, params: params, sink: sink, gate: batch?.gate)
        } else {
            batch?.skip()
            handleNotification(method: method, params: params)
        }
    }

    private func handleNotification(method: String, params: JSONValue?) {
        if method == "$/cancelRequest" {
            if let id = params?["id"] { cancel(id: id, answer: true) }
            return
        }
        delegate?.didReceiveNotification(method: method, params: params, session: self)
    }

    private func dispatchRequest(id: JSONValue, method: String, params: JSONValue?, sink: ResponseSink, gate: BatchGate? = nil) {
        if state.withLock({ $0.closing }) {
            sink.deliver(id: id, .failure(.invalidRequest("server is shutting down")))
            return
        }
        guard let delegate else {
            sink.deliver(id: id, .failure(.internalError("no service attached")))
            return
        }
        switch delegate.admit(request: method, params: params, session: self) {
        case .reject(let error):
            sink.deliver(id: id, .failure(error))
            return
        case .answer(let result):
            sink.deliver(id: id, .success(result))
            return
        case .dispatch:
            break
        }
        guard let handler = delegate.methods.handler(for: method) else {
            let suggestion = Suggestions.closest(to: method, in: delegate.methods.methodNames)
            sink.deliver(id: id, .failure(.methodNotFound(method, suggestion: suggestion)))
            return
        }
        let serial = state.withLock { state -> UInt64 in
            state.nextSerial += 1
            state.inFlight[state.nextSerial] = InFlightRequest(id: id, task: nil, sink: sink)
            state.serialsByID[id] = state.nextSerial
            return state.nextSerial
        }
        let context = RequestContext(
            id: id, method: method, session: self, progress: delegate.progressReporter(for: params, session: self))
        inFlightGroup.enter()
        let task = Task { [self] in
            if let gate { await gate.enter() }
            defer { gate?.leave() }
            let outcome: Result<RawJSON, JSONRPCError>
            do {
                // Cancelled while it waited for its batch's turn: already answered.
                try Task.checkCancellation()
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

    /// Cancels an in-flight request: answered `-32800` when `answer` (LSP's `$/cancelRequest`),
    /// or never answered at all (MCP's `notifications/cancelled`).
    public func cancel(id: JSONValue, answer: Bool) {
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

    /// Stops admitting requests: each one read from now on is answered at once with
    /// "server is shutting down", so none is left unanswered when the process ends.
    public func stopAdmitting() {
        let first = state.withLock { state -> Bool in
            defer { state.closing = true }
            return !state.closing
        }
        if first { delegate?.sessionWillStopAdmitting(self) }
    }

    /// True once the session has stopped admitting requests.
    public var isClosing: Bool { state.withLock { $0.closing } }

    public func cancelAll() {
        let tasks = state.withLock { $0.inFlight.values.compactMap(\.task) }
        tasks.forEach { $0.cancel() }
    }

    /// Ends the session: later requests are refused, the delegate hears of it and is let go,
    /// since it holds the session (its method handlers and observers do); otherwise each
    /// session — one per `POST /mcp` request — would keep the other alive forever.
    public func close() {
        state.withLock { $0.closing = true }
        let delegate = delegateBox.withLock { box in
            defer { box = nil }
            return box
        }
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
    let gate = BatchGate(width: BatchGate.defaultWidth)

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

/// Lets at most `width` requests of one batch run at a time, so that a batch of thousands
/// does not fill the store's queues ahead of the requests sent after it (a `get` behind a
/// batch of 5,000 `list` calls waits for at most `width` of them, not all). Every element is
/// admitted in stream order before any runs; the batch is still answered as one array.
final class BatchGate: Sendable {
    /// Wide enough that a batch of slow remote-backend calls still overlaps its network waits.
    static let defaultWidth = 16

    private struct State {
        var running = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
        var next = 0  // index of the first waiter not yet resumed
    }

    private let width: Int
    private let state = Mutex(State())

    init(width: Int) {
        self.width = max(1, width)
    }

    func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { state -> Bool in
                guard state.running >= width else {
                    state.running += 1
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    /// Hands the place to the longest waiter, if any.
    func leave() {
        let successor = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.next < state.waiting.count else {
                state.running -= 1
                return nil
            }
            defer { state.next += 1 }
            return state.waiting[state.next]
        }
        successor?.resume()
    }
}
