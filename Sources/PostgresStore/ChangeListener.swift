import DataSourceDomain
import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Hears every committed status change of every agent on the database: `LISTEN` on one
/// pooled connection; each notification (sent by the committing transaction) wakes a read of
/// the change log after the last sequence delivered, so a change is delivered exactly once
/// however notifications are coalesced. When the connection drops (a server restart), the
/// listener reconnects with a short backoff and reads the log first: what was committed while
/// it was away is delivered then.
final class ChangeListener: Sendable {
    let client: PostgresClient
    let logger: Logger
    let deliver: @Sendable (StatusChange) -> Void
    private let lastSeen: Mutex<Int64>

    init(client: PostgresClient, logger: Logger, startAfter sequence: Int64, deliver: @escaping @Sendable (StatusChange) -> Void) {
        self.client = client
        self.logger = logger
        self.deliver = deliver
        lastSeen = Mutex(sequence)
    }

    func run() async {
        var backoff: UInt64 = 100_000_000
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: Schema.notificationChannel) { notifications in
                        // Listening now: anything committed before is in the log.
                        try await self.readLog(connection)
                        backoff = 100_000_000
                        for try await _ in notifications { try await self.readLog(connection) }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning("PostgreSQL store: status listener disconnected, reconnecting: \(String(reflecting: error))")
            }
            try? await Task.sleep(nanoseconds: backoff)
            backoff = min(backoff * 2, 2_000_000_000)
        }
    }

    /// Delivers the changes after the last one delivered, in commit order (a change whose
    /// source was deleted since has no row to join and is not announced).
    private func readLog(_ connection: PostgresConnection) async throws {
        let after = lastSeen.withLock { $0 }
        var changes: [(sequence: Int64, previous: String, status: String, record: CatalogRecord)] = []
        let rows = try await connection.query("""
            SELECT c.sequence, c.previous_status, c.status, \(unescaped: CatalogRecord.selection.split(separator: ",").map { "d." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))
            FROM datasource_agent.status_changes c JOIN datasource_agent.datasources d ON d.id = c.datasource_id
            WHERE c.sequence > \(after) ORDER BY c.sequence
            """, logger: logger)
        for try await row in rows {
            let cells = row.makeRandomAccess()
            let sequence = try cells[0].decode(Int64.self)
            let previous = try cells[1].decode(String.self)
            let status = try cells[2].decode(String.self)
            changes.append((sequence, previous, status, try CatalogRecord(row: row, offset: 3)))
        }
        let catalog = CatalogQueries(client: client, logger: logger)
        for change in changes {
            var details = change.record.details(issues: try await catalog.issues(change.record.id))
            details.summary.status = DataSourceStatus(rawValue: change.status) ?? details.summary.status
            deliver(StatusChange(details: details, previousStatus: DataSourceStatus(rawValue: change.previous) ?? .processing))
            lastSeen.withLock { $0 = max($0, change.sequence) }
        }
    }
}
