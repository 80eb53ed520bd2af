import DataSourceDomain
import Synchronization

/// The data sources seen `processing` and when each is next asked about: 1 s after it was
/// seen, then doubling to at most 30 s between polls (SPEC §10).
final class ProcessingWatcher: Sendable {
    struct Entry: Sendable {
        var delay: Duration
        var due: ContinuousClock.Instant
        /// The upload's `$/progress`, when the upload asked for it.
        var progress: ProgressHandler?
    }

    let initialDelay: Duration
    let maxDelay: Duration
    private let entries = Mutex<[DataSourceID: Entry]>([:])
    private let wakeUp: AsyncStream<Void>.Continuation
    private let wakeUps: AsyncStream<Void>

    init(initialDelay: Duration = .seconds(1), maxDelay: Duration = .seconds(30)) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Starts watching a source seen processing (no change when it is already watched, except
    /// that a progress handler given now is kept).
    func watch(_ id: DataSourceID, progress: ProgressHandler? = nil) {
        let added = entries.withLock { entries -> Bool in
            if entries[id] != nil {
                if let progress { entries[id]?.progress = progress }
                return false
            }
            entries[id] = Entry(delay: initialDelay, due: .now + initialDelay, progress: progress)
            return true
        }
        if added { wakeUp.yield() }
    }

    func isWatching(_ id: DataSourceID) -> Bool { entries.withLock { $0[id] != nil } }

    func entry(_ id: DataSourceID) -> Entry? { entries.withLock { $0[id] } }

    /// Asks about a watched source at once (a list answer showed it no longer processing).
    func pollSoon(_ id: DataSourceID) {
        entries.withLock { $0[id]?.due = .now }
        wakeUp.yield()
    }

    /// Stops watching; returns what was kept for it.
    @discardableResult
    func stop(_ id: DataSourceID) -> Entry? {
        entries.withLock { $0.removeValue(forKey: id) }
    }

    /// After a poll that found it still processing (or could not ask): the next poll waits twice
    /// as long, at most `maxDelay`.
    func backOff(_ id: DataSourceID) {
        entries.withLock { entries in
            guard var entry = entries[id] else { return }
            entry.delay = min(entry.delay * 2, maxDelay)
            entry.due = .now + entry.delay
            entries[id] = entry
        }
    }

    var watched: [DataSourceID] { entries.withLock { Array($0.keys) } }

    /// Polls every due source until cancelled. Idle (nothing watched) it sleeps until a source
    /// is watched; otherwise it looks at the schedule every 250 ms at most.
    func run(poll: @Sendable (DataSourceID) async -> Void) async {
        var signals = wakeUps.makeAsyncIterator()
        while !Task.isCancelled {
            let now = ContinuousClock.now
            let due = entries.withLock { $0.filter { $0.value.due <= now }.map(\.key) }
            for id in due where !Task.isCancelled {
                await poll(id)
            }
            let next = entries.withLock { $0.values.map(\.due).min() }
            if let next {
                let wait = min(max(next - .now, .milliseconds(10)), .milliseconds(250))
                do { try await Task.sleep(for: wait) } catch { return }
            } else {
                guard await signals.next() != nil else { return }
            }
        }
    }
}
