import DataSourceDomain
import Dispatch
import Foundation
import GRDB
import JSONKit
import Logging

extension DataSourceError {
    /// A failure of the store turned into a Claro error. SQLite's messages carry SQL text,
    /// which says nothing useful to a client and is kept out of the answer (it is logged).
    static func storage(_ error: any Error, filter: String? = nil) -> DataSourceError {
        if let error = error as? DataSourceError { return error }
        guard let database = error as? DatabaseError else {
            return DataSourceError(.storageError, details: ["reason": "the store could not be read or written"])
        }
        let reason: String
        if let filter, [.SQLITE_ERROR, .SQLITE_TOOBIG, .SQLITE_RANGE].contains(database.resultCode) {
            // A query SQLite would not prepare: the filter is beyond what it can evaluate.
            return DataSourceError(.invalidParameters, details: [
                "parameter": "filter", "filter": .string(filter), "position": 0,
                "reason": "the filter is too complex for the store to evaluate",
            ])
        }
        switch database.resultCode {
        case .SQLITE_FULL: reason = "the disk is full"
        case .SQLITE_BUSY, .SQLITE_LOCKED: reason = "the store is busy; try again"
        case .SQLITE_READONLY, .SQLITE_PERM: reason = "the store is read-only for this process"
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: reason = "the store's files are damaged"
        case .SQLITE_NOMEM: reason = "out of memory"
        case .SQLITE_INTERRUPT: reason = "the query was interrupted"
        default: reason = "the store could not be read or written"
        }
        return DataSourceError(.storageError, details: ["reason": .string(reason)])
    }
}

extension DataSourceError {
    /// Writing into the store failed with this errno.
    static func storeWrite(errno code: Int32) -> DataSourceError {
        let reason = switch code {
        case ENOSPC, EDQUOT: "the disk is full"
        case EROFS, EACCES, EPERM: "the store is read-only for this process"
        default: "the store could not be written"
        }
        return DataSourceError(.storageError, details: ["reason": .string(reason)])
    }
}

extension LocalBackend {
    /// Which threads a blocking store operation runs on.
    enum StoreLane {
        /// Catalog reads and writes (list, get, delete, key checks): a millisecond each.
        case catalog
        /// Reading rows and copying originals: as long as the page or the file takes.
        case rows
    }

    /// SQLite calls and file copies block (a busy store for up to its 10 s timeout, a large
    /// original for as long as the copy takes); they run on these threads, never on Swift's
    /// cooperative pool, whose few threads every other request needs. On Linux a concurrent
    /// queue runs only as many blocks at once as there are cores, first in first out, so
    /// row reads and catalog lookups get queues of different QoS (libdispatch keeps one
    /// thread pool per QoS): a `get` then never waits behind hundreds of heavy `data` pages.
    private static let catalogWork = DispatchQueue(label: "datasource-agent.store.catalog", qos: .userInitiated, attributes: .concurrent)
    private static let rowWork = DispatchQueue(label: "datasource-agent.store.rows", qos: .utility, attributes: .concurrent)

    func offCooperativePool<T: Sendable>(on lane: StoreLane = .catalog, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            (lane == .rows ? Self.rowWork : Self.catalogWork).async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs a store operation so that only Claro errors leave it.
    func storing<T>(filter: String? = nil, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DataSourceError {
            throw error
        } catch {
            logger.error("store operation failed: \(error)")
            throw DataSourceError.storage(error, filter: filter)
        }
    }
}
