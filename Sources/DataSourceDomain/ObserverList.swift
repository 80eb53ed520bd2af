import Synchronization

/// A thread-safe list of callbacks: how every backend keeps its status observers.
public final class ObserverList<Event: Sendable>: Sendable {
    private let state = Mutex<(next: UInt64, observers: [UInt64: @Sendable (Event) -> Void])>((0, [:]))

    public init() {}

    public func add(_ observer: @escaping @Sendable (Event) -> Void) -> ObserverToken {
        state.withLock { state in
            state.next += 1
            state.observers[state.next] = observer
            return ObserverToken(rawValue: state.next)
        }
    }

    public func remove(_ token: ObserverToken) {
        _ = state.withLock { $0.observers.removeValue(forKey: token.rawValue) }
    }

    /// Calls every observer outside the lock, so an observer may add or remove observers.
    public func emit(_ event: Event) {
        let observers = state.withLock { Array($0.observers.values) }
        for observer in observers { observer(event) }
    }
}
