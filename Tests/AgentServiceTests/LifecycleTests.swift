import AgentService
import JSONRPC
import Testing

@Suite struct LifecycleStateMachineTests {
    @Test func requestsBeforeInitializeAreRefusedExceptPing() {
        var machine = LifecycleStateMachine(allowedBeforeInitialize: ["ping"])
        #expect(machine.receiveRequest("datasources/list") == .reject(.serverNotInitialized))
        #expect(machine.receiveRequest("shutdown") == .reject(.serverNotInitialized))
        #expect(machine.receiveRequest("ping") == .dispatch)
        #expect(machine.receiveNotification("initialized") == .drop)
        #expect(machine.state == .uninitialized)
    }

    @Test func initializeThenShutdownThenExit() {
        var machine = LifecycleStateMachine()
        #expect(machine.receiveRequest("initialize") == .dispatch)
        #expect(machine.state == .running)
        #expect(machine.receiveRequest("initialize") == .reject(.invalidRequest("server is already initialized")))
        #expect(machine.receiveNotification("initialized") == .deliver)
        #expect(machine.receiveRequest("datasources/list") == .dispatch)
        #expect(machine.receiveRequest("shutdown") == .answerNull)
        #expect(machine.receiveRequest("datasources/list") == .reject(.invalidRequest("server is shut down")))
        #expect(machine.receiveRequest("initialize") == .reject(.invalidRequest("server is shut down")))
        #expect(machine.receiveNotification("exit") == .exit(code: 0))
    }

    @Test func exitWithoutShutdownIsCodeOne() {
        var fresh = LifecycleStateMachine()
        #expect(fresh.receiveNotification("exit") == .exit(code: 1))
        var running = LifecycleStateMachine()
        _ = running.receiveRequest("initialize")
        #expect(running.receiveNotification("exit") == .exit(code: 1))
    }
}
