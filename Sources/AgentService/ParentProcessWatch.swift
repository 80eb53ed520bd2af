import Dispatch
import Foundation

/// LSP's `processId`: when the editor that spawned the agent dies without closing its stdin,
/// nobody would ever reap the agent, so it polls for the process and leaves with it.
final class ParentProcessWatch: Sendable {
    private let timer: TimerBox

    init?(pid: pid_t, onGone: @escaping @Sendable () -> Void) {
        guard pid > 0 else { return nil }
        let source = DispatchSource.makeTimerSource(queue: .global())
        source.schedule(deadline: .now() + .milliseconds(250), repeating: .milliseconds(250), leeway: .milliseconds(50))
        source.setEventHandler {
            if kill(pid, 0) != 0 && errno == ESRCH {
                source.cancel()
                onGone()
            }
        }
        source.resume()
        timer = TimerBox(timer: source)
    }

    deinit { timer.timer.cancel() }
}

/// Keeps a dispatch timer alive; dispatch sources are thread-safe but not marked Sendable.
final class TimerBox: @unchecked Sendable {
    let timer: any DispatchSourceTimer
    init(timer: any DispatchSourceTimer) { self.timer = timer }
}
