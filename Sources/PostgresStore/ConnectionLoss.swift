import NIOCore
import PostgresNIO
import Synchronization

/// Telling "the connection to the server went away" (a server restart, a network cut) from
/// "the server refused the work": a load interrupted by the first is processed again when its
/// lease lapses, instead of being failed with a message about the rows that is not true.
enum ConnectionLoss {
    /// The connection closed while work on it was waiting for an answer.
    struct Closed: Error, CustomStringConvertible {
        var description: String { "the connection to PostgreSQL closed" }
    }

    static func isConnectionLoss(_ error: any Error) -> Bool {
        switch error {
        case is Closed:
            return true
        case let transaction as PostgresTransactionError:
            // A lost connection fails the closure and then the rollback; either says it.
            return [transaction.beginError, transaction.closureError, transaction.rollbackError, transaction.commitError]
                .contains { $0.map(isConnectionLoss) ?? false }
        case let failure as PSQLError:
            switch failure.code {
            case .serverClosedConnection, .connectionError, .uncleanShutdown:
                return true
            case .server:
                // SQLSTATE class 08 (connection exception) and 57P (the server shutting down,
                // crashed or starting: "terminating connection due to administrator command").
                let state = failure.serverInfo?[.sqlState] ?? ""
                return state.hasPrefix("08") || state.hasPrefix("57P")
            default:
                return false
            }
        default:
            return false
        }
    }

    /// `body` (a transaction on `connection`), or `Closed` as soon as the connection closes.
    /// postgres-nio 1.33 leaves a transaction waiting forever when the server ends the
    /// connection during its `COPY` (a restart's FATAL "terminating connection due to
    /// administrator command"): `copyFrom` never returns, or its `CopyFail` or the `ROLLBACK`
    /// after it waits behind the dead query, so a load would hold its lease forever and never
    /// be taken over. An abandoned `body` stays suspended on the closed connection (with the
    /// thread that read rows for its `COPY`); nothing waits for it. Cancelling the caller
    /// cancels `body`.
    static func racingClose<T: Sendable>(of connection: PostgresConnection, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let pending = Mutex<CheckedContinuation<T, any Error>?>(nil)
        let resume = { @Sendable (result: Result<T, any Error>) in
            pending.withLock { waiting in
                waiting?.resume(with: result)
                waiting = nil
            }
        }
        let work = Mutex<Task<Void, Never>?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                pending.withLock { $0 = continuation }
                work.withLock { task in
                    task = Task {
                        do { resume(.success(try await body())) } catch { resume(.failure(error)) }
                    }
                }
                // Registered after the work started: on a connection already closed it runs at once.
                connection.closeFuture.whenComplete { _ in resume(.failure(Closed())) }
            }
        } onCancel: {
            work.withLock { $0?.cancel() }
        }
    }
}
