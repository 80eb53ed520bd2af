import DataSourceDomain
import Foundation

/// Where everything lives inside a store directory. One SQLite file per data source keeps
/// delete total (unlink the file) and lets queries run while another source is ingested.
public struct StoreLayout: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    public var catalog: URL { root.appendingPathComponent("catalog.sqlite") }
    public var originals: URL { root.appendingPathComponent("originals", isDirectory: true) }
    public var tables: URL { root.appendingPathComponent("tables", isDirectory: true) }
    public var secret: URL { root.appendingPathComponent("secret") }

    public func original(_ id: String) -> URL { originals.appendingPathComponent(id) }
    public func table(_ id: String) -> URL { tables.appendingPathComponent("\(id).sqlite") }
    /// Rows are written here and renamed onto `table(_:)` only when complete, so a crash
    /// never leaves half a table visible.
    public func partialTable(_ id: String) -> URL { tables.appendingPathComponent("\(id).partial.sqlite") }

    /// Creates the directory tree with owner-only permissions, and makes sure this process may
    /// write into it: a store that cannot be written is refused at start with the reason, not
    /// at the first upload.
    public func create() throws {
        let fm = FileManager.default
        for directory in [root, originals, tables] {
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: directory.path, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else { throw StoreOpenError(directory, "it exists and is not a directory") }
                continue
            }
            // Each missing directory on the way, owner-only, so that the failure names its cause.
            var path = ""
            for component in directory.standardizedFileURL.pathComponents.dropFirst() {
                path += "/" + component
                if mkdir(path, 0o700) != 0 && errno != EEXIST {
                    throw StoreOpenError(directory, "it cannot be created (\(path): \(String(cString: strerror(errno))))")
                }
            }
        }
        for directory in [root, originals, tables] where access(directory.path, W_OK | X_OK) != 0 {
            let cause = String(cString: strerror(errno))
            throw StoreOpenError(directory, "this process cannot write into it (\(cause))")
        }
        guard chmod(root.path, 0o700) == 0 else {
            throw StoreOpenError(root, "its mode cannot be set to 0700 (\(String(cString: strerror(errno))))")
        }
    }

    public var lockFile: URL { root.appendingPathComponent(".lock") }

    /// Runs `body` holding an exclusive `flock` on the store's lock file (creating and
    /// migrating a store that several processes may open at once).
    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        try Self.withLock(lockFile, LOCK_EX, body)!
    }

    /// Held shared by an upload from its first byte written to its catalog entry, and by a
    /// delete from its catalog entry to its last file removed; held exclusively by whoever
    /// compares the catalog with the files (`check`, the sweep of leftovers at start), so that
    /// neither operation is ever seen half done. A lock of its own, so that opening a store
    /// never waits for another process's long upload.
    public var operationsLockFile: URL { root.appendingPathComponent(".operations.lock") }

    func withOperationShared<T>(_ body: () throws -> T) throws -> T {
        try Self.withLock(operationsLockFile, LOCK_SH, body)!
    }

    func withOperationsExclusive<T>(_ body: () throws -> T) throws -> T {
        try Self.withLock(operationsLockFile, LOCK_EX, body)!
    }

    /// Runs `body` only if no operation is under way (nil otherwise): for work that can wait
    /// for another time.
    func ifNoOperations<T>(_ body: () throws -> T) throws -> T? {
        try Self.withLock(operationsLockFile, LOCK_EX | LOCK_NB, body)
    }

    /// Runs `body` holding `operation` (a `flock` operation) on `file`; nil when `LOCK_NB` was
    /// asked and the lock is taken.
    private static func withLock<T>(_ file: URL, _ operation: Int32, _ body: () throws -> T) throws -> T? {
        let fd = open(file.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DataSourceError.storeWrite(errno: errno) }
        defer { close(fd) }
        while flock(fd, operation) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return nil }
            throw DataSourceError.storeWrite(errno: errno)
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// `$XDG_DATA_HOME/datasource-agent`, else `~/.local/share/datasource-agent`.
    public static func defaultRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("datasource-agent", isDirectory: true)
        }
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return home.appendingPathComponent(".local/share/datasource-agent", isDirectory: true)
    }
}

/// Why a store directory cannot be used; said at start, before any request is read.
public struct StoreOpenError: Error, CustomStringConvertible {
    public let description: String

    init(_ directory: URL, _ reason: String) {
        description = "the store directory \(directory.path) is unusable: \(reason)"
    }
}
