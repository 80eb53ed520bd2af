import Synchronization
import Testing
@testable import JSONRPC

private final class Counts: Sendable {
    let state = Mutex((running: 0, peak: 0, done: 0))
}

@Suite struct BatchGateTests {
    @Test func atMostWidthRunAtOnceAndEveryoneGetsThrough() async {
        let gate = BatchGate(width: 4)
        let counts = Counts()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    await gate.enter()
                    counts.state.withLock { $0.running += 1; $0.peak = max($0.peak, $0.running) }
                    try? await Task.sleep(for: .microseconds(200))
                    counts.state.withLock { $0.running -= 1; $0.done += 1 }
                    gate.leave()
                }
            }
        }
        let final = counts.state.withLock { $0 }
        #expect(final.done == 200)
        #expect(final.peak <= 4)
        #expect(final.peak >= 2, "the gate let requests overlap")
    }
}
