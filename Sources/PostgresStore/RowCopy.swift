import DataSourceDomain
import Foundation
import LocalStore
import Logging
import NIOCore
import PostgresNIO

/// The hand-over between the pipeline's insert stage (a thread, which encodes the rows) and
/// the `COPY … FROM STDIN` of the publishing transaction (async, on the connection's event
/// loop). Bounded: the thread waits while `depth` messages are queued, so a file of any
/// size is held at most a few MiB at a time. Either side stopping stops the other: the
/// thread's next `send` throws once the `COPY` side has `stop`ped (its error, cancellation),
/// and the `COPY` side sees the loads the thread abandoned or never ended.
final class CopyHandOver: CopyTarget, @unchecked Sendable {
    enum Message {
        case begin([ColumnType])
        case lines(ByteBuffer)
        case end
        case abandon
    }

    /// The `COPY` side stopped: the thread's load ends with this error.
    struct Stopped: Error, CustomStringConvertible {
        var description: String { "the COPY into PostgreSQL stopped" }
    }

    private let depth: Int
    private let condition = NSCondition()
    private var queued = 0
    private var stopped = false
    private let continuation: AsyncStream<Message>.Continuation
    private var iterator: AsyncStream<Message>.AsyncIterator

    init(depth: Int = 4) {
        self.depth = depth
        let (messages, continuation) = AsyncStream<Message>.makeStream()
        self.continuation = continuation
        iterator = messages.makeAsyncIterator()
    }

    // MARK: The insert stage's side (a thread of its own: it may wait)

    func begin(types: [ColumnType]) throws { try put(.begin(types)) }

    func send(_ lines: [UInt8]) throws { try put(.lines(ByteBuffer(bytes: lines))) }

    func end() throws { try put(.end) }

    /// Never waits: the `COPY` side may be gone already.
    func abandon() { continuation.yield(.abandon) }

    /// No more loads (the pipeline returned or threw).
    func close() { continuation.finish() }

    private func put(_ message: Message) throws {
        condition.lock()
        while queued >= depth, !stopped { condition.wait() }
        guard !stopped else {
            condition.unlock()
            throw Stopped()
        }
        queued += 1
        condition.unlock()
        continuation.yield(message)
    }

    // MARK: The COPY side

    /// The next message, or nil when the thread closed the hand-over (one task reads them).
    func next() async -> Message? {
        let message = await iterator.next()
        switch message {
        case .begin, .lines, .end: taken()
        case .abandon, nil: break
        }
        return message
    }

    private func taken() {
        condition.lock()
        queued -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// The `COPY` side will take no more: the thread's next hand-over throws `Stopped`.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
        continuation.finish()
    }
}

/// What the `COPY` side of a load found at the end.
enum RowCopy {
    /// The thread abandoned the load being copied (the `COPY` is failed and rolled back).
    private struct Abandoned: Error {}

    /// Copies the loads the thread hands over into the source's table, in the current transaction: each
    /// load under a savepoint, rolled back when the load is abandoned (a reload after a value
    /// that does not fit creates the table again with the new types), so at most the last
    /// load's rows remain. Returns whether the last load ended (all its rows copied).
    static func run(
        _ handOver: CopyHandOver, into id: DataSourceID, format: CopyFormat, connection: PostgresConnection, logger: Logger
    ) async throws -> Bool {
        let table = RowTable.name(id)
        var loads = 0
        var complete = false
        while let message = await handOver.next() {
            guard case .begin(let types) = message else { continue }
            if loads > 0 { try await connection.query("ROLLBACK TO SAVEPOINT load", logger: logger) }
            loads += 1
            complete = false
            try await connection.query("SAVEPOINT load", logger: logger)
            let definitions = (["r bigint NOT NULL"] + types.indices.map { "c\($0) \(RowTable.sqlType(types[$0]))" }).joined(separator: ", ")
            try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table)"), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(table) (\(definitions))"), logger: logger)
            // copyFrom quotes the name it is given whole, so the schema comes from the search path.
            try await connection.query("SET LOCAL search_path TO datasource_agent", logger: logger)
            do {
                try await connection.copyFrom(table: copyTarget(id, format), columns: [], format: .text(.init()), logger: logger) { writer in
                    while let message = await handOver.next() {
                        switch message {
                        case .lines(let lines): try await writer.write(lines)
                        case .end: return
                        case .abandon, .begin: throw Abandoned()
                        }
                    }
                    throw Abandoned()
                }
                complete = true
            } catch is Abandoned {
                continue
            }
        }
        return complete
    }

    /// What to give `copyFrom` as the table. postgres-nio 1.33 writes `COPY "<table>" FROM
    /// STDIN WITH (FORMAT text)` and has no binary format; it only forwards the data, so for
    /// the binary format the statement's options are ended after the name (which is ours: a
    /// validated UUID) and its own commented out.
    static func copyTarget(_ id: DataSourceID, _ format: CopyFormat) -> String {
        switch format {
        case .text: RowTable.unqualifiedName(id)
        case .binary: "\(RowTable.unqualifiedName(id))\" FROM STDIN WITH (FORMAT binary) --"
        }
    }
}
