import Dispatch
import Foundation
import Logging
import Synchronization

/// Runs one session over the process's stdin and stdout until the client leaves, and says
/// with which exit code the process should end. It ends no process itself: the owner (a
/// service group) decides what else stops before the process exits.
public final class StdioServer: Sendable {
    public let maxMessageBytes: Int
    let logger: Logger
    private let state = Mutex<State>(State())

    private struct State {
        var session: Session?
        var finished = false
        var completion: CheckedContinuation<Int32, Never>?
        var result: Int32?
    }

    public init(maxMessageBytes: Int, logger: Logger) {
        self.maxMessageBytes = maxMessageBytes
        self.logger = logger
    }

    /// Moves fd 1 aside for the protocol and points fd 1 at stderr, so that a stray `print`
    /// anywhere in the process lands in the log instead of corrupting the stream.
    public static func claimStdout() -> Int32 {
        let protocolFD = dup(STDOUT_FILENO)
        // A process the agent starts must not hold the client's pipe open.
        _ = fcntl(protocolFD, F_SETFD, FD_CLOEXEC)
        dup2(STDERR_FILENO, STDOUT_FILENO)
        return protocolFD
    }

    /// How long a graceful end (end of input, SIGTERM) waits for in-flight requests before
    /// cancelling them: no request may hold the process up for ever.
    public static let gracefulDrainLimit: DispatchTimeInterval = .seconds(60)
    /// After a graceful shutdown is asked for, how long input is still read (until end of
    /// input), answering each request with "server is shutting down".
    public static let shutdownReadGrace: DispatchTimeInterval = .seconds(2)

    /// Serves until the client leaves: end of input (exit code 0, after every in-flight answer
    /// is written), the lifecycle's `exit` (its code, after a bounded drain), or a graceful
    /// shutdown asked for with `shutDownGracefully()`. stdin is read on a thread of its own.
    public func run(attach: (Session) -> any SessionDelegate) async -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let output = OutputChannel(fileDescriptor: Self.claimStdout())
        let session = Session(output: output, logger: logger) { [self] code in
            finish(code: code, graceful: false)
        }
        session.attach(attach(session))
        state.withLock { $0.session = session }

        let reader = Thread { [self] in readUntilEndOfInput(session) }
        reader.name = "stdin"
        reader.start()
        return await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Int32? in
                if let result = state.result { return result }
                state.completion = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func readUntilEndOfInput(_ session: Session) {
        var framer = MessageFramer(maxMessageBytes: maxMessageBytes)
        let chunkSize = 64 * 1024
        let chunk = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }
        while true {
            let count = read(STDIN_FILENO, chunk.baseAddress, chunkSize)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            let events = framer.consume(UnsafeBufferPointer(rebasing: chunk[0..<count]))
            if let framing = framer.framing {
                for event in events { session.receive(event, framing: framing) }
            }
        }
        logger.debug("end of input: finishing in-flight requests")
        finish(code: 0, graceful: true)
    }

    /// SIGTERM's path: requests the client wrote before it saw us stop may still be in the
    /// pipe, so input is read for up to `shutdownReadGrace` more and each request answered
    /// with an error; then the ones already running finish.
    public func shutDownGracefully() {
        guard let session = state.withLock({ $0.session }) else { return }
        logger.info("shutting down: finishing in-flight requests")
        session.stopAdmitting()
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.shutdownReadGrace) { [self] in
            finish(code: 0, graceful: true)
        }
    }

    /// Ends the session once. A graceful end waits for every in-flight answer (bounded); an
    /// `exit` from the client waits at most 5 s, since the client wants no more answers.
    private func finish(code: Int32, graceful: Bool) {
        let session = state.withLock { state -> Session? in
            guard !state.finished else { return nil }
            state.finished = true
            return state.session
        }
        guard let session else { return }
        DispatchQueue.global().async { [self] in
            session.stopAdmitting()
            if graceful {
                if !session.drain(timeout: .now() + Self.gracefulDrainLimit) {
                    logger.warning("requests still running after \(Self.gracefulDrainLimit); cancelling them")
                    session.cancelAll()
                    session.drain(timeout: .now() + 5)
                }
            } else {
                session.cancelAll()
                session.drain(timeout: .now() + 5)
            }
            session.close()
            session.output.flush()
            let continuation = state.withLock { state -> CheckedContinuation<Int32, Never>? in
                state.result = code
                defer { state.completion = nil }
                return state.completion
            }
            continuation?.resume(returning: code)
        }
    }
}
