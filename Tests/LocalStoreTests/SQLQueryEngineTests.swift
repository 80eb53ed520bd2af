import DataSourceDomain
import Foundation
import GRDB
import JSONKit
import Testing
@testable import LocalStore

/// `datasources/query` against row files that another connection is closing or deleting.
@Suite struct SQLQueryEngineTests {
    let id = DataSourceID("550e8400-e29b-41d4-a716-446655440000")!

    private func rowFile(_ directory: URL) throws -> String {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("rows.sqlite").path
        let pool = try DatabasePool(path: path)
        try pool.write { db in
            try db.execute(sql: "CREATE TABLE rows (r INTEGER PRIMARY KEY, c0 INTEGER)")
            for value in 1...10 { try db.execute(sql: "INSERT INTO rows (c0) VALUES (?)", arguments: [value]) }
        }
        return path
    }

    private func query(_ path: String) throws -> SQLQueryResult {
        let source = SQLSource(id: id, names: [id.rawValue], columns: [DataColumn(name: "n", type: .number)], path: path)
        return try SQLQueryEngine.run(SQLQuery(sql: "SELECT sum(n) AS total FROM \"\(id.rawValue)\""), sources: [source])
    }

    /// The last connection of a WAL file checkpoints under an exclusive lock as it closes (a
    /// delete forgets the source's pool just before removing its file): a query attaching the
    /// file meanwhile waits for the lock instead of failing with STORAGE_ERROR.
    @Test func aQueryWaitsForARowFileBrieflyLocked() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sql-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = try rowFile(directory)
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE") }
        let holder = try DatabaseQueue(path: path, configuration: configuration)
        let locked = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? holder.inDatabase { db in
                try db.execute(sql: "BEGIN EXCLUSIVE")
                locked.signal()
                Thread.sleep(forTimeInterval: 0.3)
                try db.execute(sql: "COMMIT")
            }
            // In exclusive locking mode the lock outlives the transaction, until the close.
            try? holder.close()
            released.signal()
        }
        locked.wait()
        let result = try query(path)
        released.wait()
        #expect(result.rows == [[.int(55)]])
    }

    /// A row file deleted after the catalog named it answers as a source that does not exist.
    @Test func aRowFileDeletedBeforeTheQueryIsNoDataSource() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sql-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = try rowFile(directory)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        let error = #expect(throws: DataSourceError.self) { try query(path) }
        #expect(error?.code == .invalidParameters)
        #expect(error?.details["reason"] == .string("no data source \(id.rawValue)"))
    }
}
