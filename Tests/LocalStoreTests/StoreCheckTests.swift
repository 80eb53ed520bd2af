import DataSourceDomain
import Foundation
import Logging
import Testing
@testable import LocalStore

/// The consistency checker against a real store: a sound one passes, planted damage is
/// found with its kind, and uploads and deletes running beside it are never seen half done.
@Suite struct StoreCheckTests {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString)")

    func backend() throws -> LocalBackend {
        try LocalBackend(root: root, logger: Logger(label: "test"))
    }

    func upload(_ backend: LocalBackend, rows: Int, name: String = "t.csv") async throws -> DataSourceID {
        let content = "id,v\n" + (0..<rows).map { "\($0),\($0 * 2)\n" }.joined()
        let summary = try await backend.upload(UploadRequest(source: .inline(fileName: name, bytes: Array(content.utf8))), progress: nil)
        return summary.datasourceId
    }

    @Test func soundStorePassesAndDamageIsFound() async throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let store = try backend()
        let kept = try await upload(store, rows: 30)
        let damaged = try await upload(store, rows: 40)
        store.waitForIdle()
        store.stopWatchingChanges()
        let checker = StoreChecker(root: root)
        #expect(try checker.run().isConsistent)

        try FileManager.default.removeItem(at: store.layout.table(damaged.rawValue))
        try Data("x".utf8).write(to: store.layout.partialTable(kept.rawValue))
        let report = try checker.run()
        #expect(!report.isConsistent)
        #expect(Set(report.problems.map(\.kind)) == [.tableMissing, .orphanFile])
        #expect(report.problems.first { $0.kind == .tableMissing }?.datasourceId == damaged.rawValue)
        #expect(report.counts[.completed] == 2)
    }

    @Test func uploadsAndDeletesBesideTheCheckAreNeverSeenHalfDone() async throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let store = try backend()
        let checker = StoreChecker(root: root)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for n in 0..<20 {
                    let id = try await upload(store, rows: 5, name: "u\(n).csv")
                    if n.isMultiple(of: 2) { _ = try await store.delete(id) }
                }
            }
            group.addTask {
                for _ in 0..<20 {
                    let report = try checker.run()
                    // Originals without entries or entries without originals would show here;
                    // a load in progress (live owner) is not a problem.
                    let halfDone = report.problems.filter { [.orphanFile, .originalMissing].contains($0.kind) && $0.path?.hasPrefix("originals/") == true }
                    #expect(halfDone.isEmpty, "\(halfDone.map(\.message))")
                }
            }
            try await group.waitForAll()
        }
        store.waitForIdle()
        store.stopWatchingChanges()
        #expect(try checker.run().isConsistent)
    }
}
