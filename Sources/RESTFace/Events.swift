import DataSourceDomain
import Dispatch
import Foundation
import JSONKit
import Synchronization

/// The backend's status changes as server-sent events (`GET /api/v2/events`, §10): one hub
/// per REST face, fed by `addStatusObserver`, with a bounded ring of recent events so that a
/// client reconnecting with `Last-Event-ID` is sent what it missed.
///
/// Event ids are increasing integers. A process starts counting at its start time in Unix
/// milliseconds, so the ids of a later process are greater than those of an earlier one and
/// an id from before this process started is recognised (the client is told to resync).
final class EventHub: Sendable {
    enum Item: Sendable {
        /// A complete frame (`id:`, `event:`, `data:` and the blank line).
        case frame([UInt8])
        case heartbeat
    }

    /// What a new stream starts with: the frames to replay, whether the client must refetch
    /// (its position cannot be replayed), and the live stream.
    struct Subscription: Sendable {
        var id: UInt64
        var replay: [[UInt8]]
        /// The id of the newest event at the time of subscribing (the `ready` event's id).
        var position: UInt64
        var resync: String?
        var stream: AsyncStream<Item>
    }

    let capacity: Int
    /// Live events a slow client may fall behind by before its stream is closed (it then
    /// reconnects with `Last-Event-ID` and is replayed or told to resync).
    let backlog: Int
    let firstId: UInt64

    private struct State {
        var nextId: UInt64
        var ring: [(id: UInt64, frame: [UInt8])] = []
        var ringStart = 0
        var subscribers: [UInt64: AsyncStream<Item>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0
        var closed = false
    }

    private let state: Mutex<State>

    init(capacity: Int = 1000, backlog: Int = 1000, firstId: UInt64 = UInt64(Date().timeIntervalSince1970 * 1000)) {
        self.capacity = max(1, capacity)
        self.backlog = max(1, backlog)
        self.firstId = max(1, firstId)
        state = Mutex(State(nextId: max(1, firstId)))
    }

    /// The frame of one event.
    static func frame(id: UInt64, event: String, data: JSONValue) -> [UInt8] {
        Array("id: \(id)\nevent: \(event)\ndata: ".utf8) + data.serialized() + Array("\n\n".utf8)
    }

    /// The events retained, oldest first.
    private static func retained(_ state: State) -> ArraySlice<(id: UInt64, frame: [UInt8])> {
        state.ring[state.ringStart...]
    }

    /// Records a status change and sends it to every open stream.
    func publish(_ change: StatusChange) {
        publish(event: "statusChanged", data: change.json)
    }

    func publish(event: String, data: JSONValue) {
        let dropped = state.withLock { state -> [AsyncStream<Item>.Continuation] in
            guard !state.closed else { return [] }
            let id = state.nextId
            state.nextId += 1
            let frame = Self.frame(id: id, event: event, data: data)
            state.ring.append((id, frame))
            if state.ring.count - state.ringStart > capacity { state.ringStart += 1 }
            // Compact now and then rather than shifting the array on every event.
            if state.ringStart > capacity {
                state.ring.removeFirst(state.ringStart)
                state.ringStart = 0
            }
            var dropped: [AsyncStream<Item>.Continuation] = []
            for (key, continuation) in state.subscribers {
                switch continuation.yield(.frame(frame)) {
                case .enqueued: break
                case .dropped, .terminated:
                    state.subscribers.removeValue(forKey: key)
                    dropped.append(continuation)
                @unknown default: break
                }
            }
            return dropped
        }
        // A stream that fell behind ends; the client reconnects and is replayed from the ring.
        for continuation in dropped { continuation.finish() }
    }

    /// Opens a stream; `lastEventId` is the client's `Last-Event-ID` (nil: none given).
    /// Nil when the hub has closed (the server is stopping).
    func subscribe(lastEventId: String?) -> Subscription? {
        let (stream, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(backlog))
        let subscription = state.withLock { state -> Subscription? in
            guard !state.closed else { return nil }
            let newest = state.nextId - 1
            var replay: [[UInt8]] = []
            var resync: String?
            let retained = Self.retained(state)
            if let text = lastEventId?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
                if let last = UInt64(text), last >= firstId - 1, last <= newest {
                    let oldest = retained.first?.id ?? state.nextId
                    if last + 1 < oldest {
                        resync = "the events after \(last) are no longer retained"
                    } else {
                        replay = retained.filter { $0.id > last }.map(\.frame)
                    }
                } else {
                    resync = "the event id \(text) is not from this server's run"
                }
            } else {
                resync = "no Last-Event-ID: the stream starts now"
            }
            state.nextSubscriber += 1
            let id = state.nextSubscriber
            state.subscribers[id] = continuation
            return Subscription(id: id, replay: replay, position: newest, resync: resync, stream: stream)
        }
        if subscription == nil { continuation.finish() }
        return subscription
    }

    func unsubscribe(_ id: UInt64) {
        let continuation = state.withLock { $0.subscribers.removeValue(forKey: id) }
        continuation?.finish()
    }

    /// Sends a heartbeat to every open stream.
    func beat() {
        let continuations = state.withLock { Array($0.subscribers.values) }
        for continuation in continuations { continuation.yield(.heartbeat) }
    }

    /// Ends every stream and refuses new ones (graceful shutdown).
    func close() {
        let continuations = state.withLock { state -> [AsyncStream<Item>.Continuation] in
            state.closed = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for continuation in continuations { continuation.finish() }
    }

    var openStreams: Int { state.withLock { $0.subscribers.count } }
}

/// Short-lived tokens for `GET /api/v2/events?token=…` (a browser's EventSource cannot set
/// an Authorization header, and the key itself never goes into a URL). A token stands for
/// the key that obtained it: every use checks that key again, so revoking the key revokes
/// its tokens. It may be used more than once until it expires, so that the browser's own
/// reconnection works for a little while.
final class EventTokens: Sendable {
    let lifetime: Duration
    private let tokens = Mutex<[String: (key: String?, expires: UInt64)]>([:])

    init(lifetime: Duration) {
        self.lifetime = lifetime
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private var lifetimeNanoseconds: UInt64 {
        let (seconds, attoseconds) = lifetime.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    /// A new token for `key` (nil: a store with no keys).
    func issue(for key: String?) -> String {
        var generator = SystemRandomNumberGenerator()
        let token = "evt_" + (0..<4).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        let now = Self.now()
        let expires = now + lifetimeNanoseconds
        tokens.withLock { tokens in
            tokens = tokens.filter { $0.value.expires > now }
            tokens[token] = (key, expires)
        }
        return token
    }

    /// The key a token stands for, if the token is known and has not expired.
    func key(for token: String) -> String?? {
        let now = Self.now()
        return tokens.withLock { tokens -> String?? in
            guard let entry = tokens[token] else { return .none }
            guard entry.expires > now else {
                tokens.removeValue(forKey: token)
                return .none
            }
            return .some(entry.key)
        }
    }
}
