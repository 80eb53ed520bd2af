import DataSourceDomain
import Foundation
import GRDB
import JSONKit
import Testing
@testable import LocalStore

@Suite struct CatalogMigrationTests {
    /// A catalog written before spreadsheets reported their sheets gains the column, keeps its
    /// rows (read back without sheets), and stores sheets for new ones.
    @Test func sheetsColumnIsAddedToAnOlderCatalog() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("catalog.sqlite").path
        let id = DataSourceID("550e8400-e29b-41d4-a716-446655440000")!
        do {
            let queue = try DatabaseQueue(path: path)
            try Catalog.migrator.migrate(queue, upTo: "v3-api-keys")
            try queue.write { db in
                #expect(try !db.columns(in: "datasource").contains { $0.name == "sheets" })
                try db.execute(
                    sql: """
                        INSERT INTO datasource (id, fileName, contentType, fileSize, status, uploadedAt, sequence, rowCount, cleanedRows, errorCount, warningCount)
                        VALUES (?, 'old.xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', 10, 'completed', 1, 1, 0, 0, 0, 0)
                        """, arguments: [id.rawValue])
            }
        }
        let catalog = try Catalog(path: path)
        let old = try catalog.record(id)
        var record = try #require(old)
        #expect(record.sheets == nil && record.details.sheets == nil)
        record.sheets = SpreadsheetSheets(names: ["A", "B"], read: "B")
        try catalog.pool.write { db in try record.update(db) }
        let updated = try catalog.record(id)
        let details = try #require(updated).details
        #expect(details.sheets == SpreadsheetSheets(names: ["A", "B"], read: "B"))
        guard case .object(let json) = details.json else { Issue.record("get is not an object"); return }
        let names: JSONValue = .array([.string("A"), .string("B")])
        let read: JSONValue = .string("B")
        #expect(json["sheets"] == names)
        #expect(json["sheet"] == read)
    }
}
