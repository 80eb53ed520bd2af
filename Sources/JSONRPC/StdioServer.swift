import Dispatch
import Foundation
import Logging
import Synchronization

/// Runs one session over the process's stdin and stdout until the client leaves.
public final class StdioServer: Sendable {
    public let maxMessageBytes: Int
    let logger: Logger
    private let terminating = Atomic<Bool>(false)

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
    /// After SIGTERM, how long input is still read (until end of input) before the process ends.
    public static let signalReadGrace: DispatchTimeInterval = .seconds(2)

    /// Reads stdin on the calling thread until end of input, then drains and exits.
    /// `beforeExit` runs last, after every answer is written (the owner hands work on there).
    public func run(attach: (Session) -> any SessionDelegate, beforeExit: @escaping @Sendable () -> Void = {}) -> Never {
        self.beforeExit.withLock { $0 = beforeExit }
        signal(SIGPIPE, SIG_IGN)
        let output = OutputChannel(fileDescriptor: Self.claimStdout())
        let session = Session(output: output, logger: logger) { [self] code in
            terminate(session: nil, code: code, graceful: false)
        }
        // The closure above cannot capture `session` before it exists; keep it reachable here.
        let delegate = attach(session)
        session.attach(delegate)
        sessionForExit.withLock { $0 = session }

        signal(SIGTERM, SIG_IGN)
        let termination = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        termination.setEventHandler { [self] in
            // Requests the client wrote before it saw us stop may still be in the pipe: keep
            // reading (for at most `signalReadGrace`) and answer each with an error, so none
            // goes unanswered; then finish the ones already running.
            logger.info("SIGTERM: finishing in-flight requests")
            session.stopAdmitting()
            DispatchQueue.global().asyncAfter(deadline: .now() + Self.signalReadGrace) { [self] in
                terminate(session: session, code: 0, graceful: true)
            }
        }
        termination.resume()

        var framer = MessageFramer(maxMessageBytes: maxMessageBytes)
        let chunkSize = 64 * 1024
        let chunk = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
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
        session.stopAdmitting()
        terminate(session: session, code: 0, graceful: true)
    }

    private let sessionForExit = Mutex<Session?>(nil)
    private let beforeExit = Mutex<(@Sendable () -> Void)?>(nil)

    /// Ends the process once. A graceful end waits for every in-flight answer; an `exit` from
    /// the client waits a bounded time, since the client has said it wants no more answers.
    private func terminate(session: Session?, code: Int32, graceful: Bool) -> Never {
        let session = session ?? sessionForExit.withLock { $0 }
        if terminating.exchange(true, ordering: .acquiringAndReleasing) {
            // Another path is already draining; let it finish the exit.
            while true { sleep(60) }
        }
        if let session {
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
        }
        beforeExit.withLock { $0 }?()
        exit(code)
    }
}
