import JSONKit
import JSONRPC

struct SleepParams: Decodable, Sendable {
    var milliseconds: Int
}

extension ServiceSession {
    /// Test hooks: a request of known duration that reports progress and honours cancellation.
    static func registerDebugMethods(in table: inout MethodTable) {
        table.register("debug/sleep", params: SleepParams.self) { params, context in
            context.progress?.begin(title: "Sleeping", percentage: 0)
            let steps = 10
            for step in 1...steps {
                try await Task.sleep(for: .milliseconds(max(0, params.milliseconds) / steps))
                context.progress?.report(message: "step \(step)", percentage: step * 100 / steps)
            }
            context.progress?.end(message: "done")
            return JSONValue.object(["slept": .int(Int64(params.milliseconds))])
        }
    }
}
