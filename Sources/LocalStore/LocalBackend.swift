import DataSourceDomain
import Foundation
import GRDB
import JSONKit
import Logging
import Synchronization

/// The embedded backend: a store directory holding the catalog, each data source's rows in
/// its own SQLite file, and the original uploads.
public final class LocalBackend: DataSourceBackend {
    public let layout: StoreLayout
    let catalog: Catalog
    let logger: Logger
    let observers = ObserverList<StatusChange>()

    public init(root: URL, logger: Logger) throws {
        layout = StoreLayout(root: root)
        try layout.create()
        catalog = try Catalog(path: layout.catalog.path)
        self.logger = logger
    }

    public func list(_ query: ListQuery) async throws -> ListPage {
        try catalog.list(query)
    }

    public func details(of id: DataSourceID, maxAge: Int?) async throws -> DataSourceDetails {
        guard let record = try catalog.record(id) else { throw DataSourceError.notFound(id.rawValue) }
        return record.details()
    }

    public func data(_ query: DataQuery) async throws -> DataPage {
        throw DataSourceError.notFound(query.datasourceId.rawValue)
    }

    public func delete(_ id: DataSourceID) async throws -> DeleteReceipt {
        throw DataSourceError.notFound(id.rawValue)
    }

    public func downloadLink(for id: DataSourceID, expiresIn seconds: Int) async throws -> DownloadLink {
        throw DataSourceError.notFound(id.rawValue)
    }

    public func upload(_ request: UploadRequest, progress: ProgressHandler?) async throws -> DataSourceSummary {
        throw DataSourceError(.accessDenied)
    }

    public func addStatusObserver(_ observer: @escaping @Sendable (StatusChange) -> Void) -> ObserverToken {
        observers.add(observer)
    }

    public func removeObserver(_ token: ObserverToken) {
        observers.remove(token)
    }
}

/// A thread-safe list of callbacks.
final class ObserverList<Event: Sendable>: Sendable {
    private let state = Mutex<(next: UInt64, observers: [UInt64: @Sendable (Event) -> Void])>((0, [:]))

    func add(_ observer: @escaping @Sendable (Event) -> Void) -> ObserverToken {
        state.withLock { state in
            state.next += 1
            state.observers[state.next] = observer
            return ObserverToken(rawValue: state.next)
        }
    }

    func remove(_ token: ObserverToken) {
        _ = state.withLock { $0.observers.removeValue(forKey: token.rawValue) }
    }

    func emit(_ event: Event) {
        let observers = state.withLock { Array($0.observers.values) }
        for observer in observers { observer(event) }
    }
}
