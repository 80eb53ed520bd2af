import Foundation
import Synchronization

/// Requests per key per minute (§10). Fixed windows aligned to the wall-clock minute: a key
/// may make `limit` requests in each, and the counters start again when the minute turns.
final class RateLimiter: Sendable {
    struct Decision: Equatable {
        var allowed: Bool
        var limit: Int
        var remaining: Int
        /// When the window ends, in Unix seconds.
        var reset: Int64
        /// Seconds until then (at least 1).
        var retryAfter: Int64
    }

    let limit: Int
    private let windows = Mutex<(window: Int64, counts: [String: Int])>((0, [:]))

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts one request of `client` (a key, or the anonymous bucket) at `now`.
    func take(_ client: String, now: Double = Date().timeIntervalSince1970) -> Decision {
        let seconds = Int64(now.rounded(.down))
        let window = seconds / 60
        let reset = (window + 1) * 60
        let count = windows.withLock { state -> Int in
            if state.window != window {
                state = (window, [:])
            }
            let count = (state.counts[client] ?? 0) + 1
            state.counts[client] = count
            return count
        }
        return Decision(
            allowed: count <= limit, limit: limit, remaining: max(0, limit - count), reset: reset,
            retryAfter: max(1, reset - seconds))
    }
}
