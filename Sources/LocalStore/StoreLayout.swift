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

    /// Creates the directory tree with owner-only permissions.
    public func create() throws {
        let fm = FileManager.default
        for directory in [root, originals, tables] {
            if !fm.fileExists(atPath: directory.path) {
                try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
        }
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: root.path)
    }

    public var lockFile: URL { root.appendingPathComponent(".lock") }

    /// Runs `body` holding an exclusive `flock` on the store's lock file.
    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(lockFile.path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
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
