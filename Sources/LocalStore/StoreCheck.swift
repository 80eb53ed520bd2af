import DataSourceDomain
import Foundation
import GRDB
import JSONKit

/// One thing wrong with a store, and what `check --repair` does about it.
public struct StoreProblem: Sendable {
    public enum Kind: String, Sendable {
        /// The store directory, `originals/` or `tables/` is missing or not a directory.
        case layout
        /// A directory or file of the store that others than its owner may read or write.
        case permissions
        /// The secret that signs links and cursors is missing or not 32 bytes.
        case secret
        /// The catalog cannot be read, or SQLite's quick check finds it damaged.
        case catalogDamaged = "catalog-damaged"
        /// A data source's original upload is missing, or not the size the catalog says.
        case originalMissing = "original-missing"
        case originalSize = "original-size"
        /// A completed data source whose rows cannot all be read: its table is missing,
        /// damaged, or holds another number of rows or columns than the catalog says.
        case tableMissing = "table-missing"
        case tableDamaged = "table-damaged"
        case rowCount = "row-count"
        /// A data source left `processing` by a process that is gone.
        case abandonedProcessing = "abandoned-processing"
        /// A file no data source accounts for: a table or original of a deleted source, the
        /// work files of an interrupted load or upload, the table of a failed source.
        case orphanFile = "orphan-file"
    }

    public let kind: Kind
    public let datasourceId: String?
    /// Relative to the store directory.
    public let path: String?
    public let message: String
    let repair: StoreRepair?

    /// What `--repair` does about it, if anything.
    public var repairDescription: String? { repair?.description }

    var json: JSONValue {
        [
            "kind": .string(kind.rawValue),
            "datasourceId": datasourceId.map { .string($0) } ?? .null,
            "path": path.map { .string($0) } ?? .null,
            "message": .string(message),
            "repair": repairDescription.map { .string($0) } ?? .null,
        ]
    }
}

/// What `--repair` does for a problem. Everything here either removes what nothing refers
/// to, or hands a data source back to the store's own crash recovery.
enum StoreRepair: Sendable, CustomStringConvertible {
    case remove([URL])
    case chmod(URL, mode_t)
    /// Processes the source again from its original, as an agent starting on the store would
    /// (a completed source whose rows were lost is put back to `processing` first).
    case reprocess(DataSourceID, fromCompleted: Bool)
    /// The source cannot be processed again (its original is gone): it becomes `failed`.
    case markFailed(DataSourceID, reason: String)
    case createSecret

    var description: String {
        switch self {
        case .remove: "remove the file"
        case .chmod(_, let mode): "set its mode to \(String(mode, radix: 8))"
        case .reprocess: "process it again from its original upload"
        case .markFailed(_, let reason): "mark it failed: \(reason)"
        case .createSecret: "create a new secret (links and cursors signed before stop working)"
        }
    }
}

/// The outcome of one check: what the store holds and what is wrong with it.
public struct StoreCheckReport: Sendable {
    public let store: URL
    public var counts: [DataSourceStatus: Int] = [:]
    public var problems: [StoreProblem] = []
    /// What `--repair` did, one line each.
    public var repairs: [String] = []

    public var isConsistent: Bool { problems.isEmpty }

    public var json: JSONValue {
        var object: JSONObject = [
            "store": .string(store.path),
            "consistent": .bool(isConsistent),
            "dataSources": [
                "total": .int(Int64(counts.values.reduce(0, +))),
                "completed": .int(Int64(counts[.completed] ?? 0)),
                "processing": .int(Int64(counts[.processing] ?? 0)),
                "failed": .int(Int64(counts[.failed] ?? 0)),
            ],
            "problems": .array(problems.map(\.json)),
        ]
        object["repairs"] = .array(repairs.map { .string($0) })
        return .object(object)
    }
}

/// Why a store cannot be checked at all (as opposed to a store found inconsistent).
public struct StoreCheckError: Error, CustomStringConvertible {
    public let description: String
}

/// The consistency checker behind `datasource-agent check`: the catalog against the files,
/// files nothing refers to, rows a completed source has lost, work nobody is doing, and who
/// may read the store. It reads the catalog and the directories holding the operations lock
/// exclusively (`StoreLayout.operationsLockFile`), so that no upload or delete is seen half
/// done; agents may go on using the store meanwhile.
public struct StoreChecker: Sendable {
    public let layout: StoreLayout

    public init(root: URL) {
        layout = StoreLayout(root: root)
    }

    /// Whether a process that owns a processing source still runs.
    static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    public func run() throws -> StoreCheckReport {
        var report = StoreCheckReport(store: layout.root)
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: layout.root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StoreCheckError(description: "no store at \(layout.root.path): the directory does not exist")
        }
        guard fm.fileExists(atPath: layout.catalog.path) else {
            throw StoreCheckError(description: "\(layout.root.path) is not a store: it has no catalog.sqlite")
        }
        report.problems += permissionProblems()
        let records: [DataSourceRecord]
        var files: StoreFiles
        do {
            (records, files) = try layout.withOperationsExclusive {
                let catalog = try Catalog(readingOnly: layout.catalog.path)
                let integrity = try catalog.pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
                guard integrity == "ok" else { throw StoreCheckError(description: "SQLite's quick check says: \(integrity ?? "nothing")") }
                return (try catalog.pool.read { db in try DataSourceRecord.fetchAll(db) }, try StoreFiles(layout: layout))
            }
        } catch let error as CatalogVersionError {
            throw StoreCheckError(description: "\(layout.root.path) cannot be checked: \(error)")
        } catch {
            report.problems.append(StoreProblem(
                kind: .catalogDamaged, datasourceId: nil, path: "catalog.sqlite",
                message: "the catalog cannot be read: \(error)", repair: nil))
            return report
        }
        for record in records { report.counts[record.status, default: 0] += 1 }
        report.problems += secretProblems()
        for record in records {
            report.problems += problems(of: record, files: &files)
        }
        let orphans = Self.orphans(in: files, layout: layout, statuses: Self.statuses(records.map { ($0.id.rawValue, $0.status) }))
        // A file to be removed needs no other mode.
        let removed = Set(orphans.compactMap(\.path))
        report.problems.removeAll { $0.kind == .permissions && $0.path.map(removed.contains) == true }
        report.problems += orphans
        return report
    }

    // MARK: Permissions and the secret

    private func permissionProblems() -> [StoreProblem] {
        var found: [StoreProblem] = []
        for (directory, name) in [(layout.root, "."), (layout.originals, "originals"), (layout.tables, "tables")] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                found.append(StoreProblem(
                    kind: .layout, datasourceId: nil, path: name, message: "the store's \(name) directory is missing",
                    repair: nil))
                continue
            }
            if let mode = Self.mode(directory), mode & 0o077 != 0 {
                found.append(StoreProblem(
                    kind: .permissions, datasourceId: nil, path: name,
                    message: "the directory has mode \(String(mode, radix: 8)); only its owner may use it (0700)",
                    repair: .chmod(directory, 0o700)))
            }
        }
        // The secret signs links and cursors; the catalog holds the keys' hashes.
        let catalogFiles = ["", "-wal", "-shm"].map { URL(fileURLWithPath: layout.catalog.path + $0) }
        // Originals and rows are the users' data (files of versions before 0600 was made the
        // rule may still be readable by others).
        var files = ([layout.secret] + catalogFiles).map { ($0, $0.lastPathComponent) }
        for (directory, name) in [(layout.originals, "originals"), (layout.tables, "tables")] {
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted() {
                files.append((directory.appendingPathComponent(file), "\(name)/\(file)"))
            }
        }
        for (file, name) in files {
            if let mode = Self.mode(file), mode & 0o077 != 0 {
                found.append(StoreProblem(
                    kind: .permissions, datasourceId: nil, path: name,
                    message: "the file has mode \(String(mode, radix: 8)); only its owner may read it (0600)",
                    repair: .chmod(file, 0o600)))
            }
        }
        return found
    }

    private func secretProblems() -> [StoreProblem] {
        let size = (try? FileManager.default.attributesOfItem(atPath: layout.secret.path)[.size] as? Int) ?? nil
        guard size != 32 else { return [] }
        return [StoreProblem(
            kind: .secret, datasourceId: nil, path: "secret",
            message: size == nil ? "the secret is missing" : "the secret is \(size!) bytes, not 32",
            repair: size == nil ? .createSecret : nil)]
    }

    static func mode(_ url: URL) -> mode_t? {
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    // MARK: One data source

    private func problems(of record: DataSourceRecord, files: inout StoreFiles) -> [StoreProblem] {
        let id = record.id.rawValue
        var found: [StoreProblem] = []
        let originalSize = files.originals.removeValue(forKey: id)
        if originalSize == nil {
            found.append(StoreProblem(
                kind: .originalMissing, datasourceId: id, path: "originals/\(id)",
                message: "the original upload is missing (downloads of it fail)",
                repair: record.status == .processing
                    ? .markFailed(record.id, reason: "the original upload is missing") : nil))
        } else if originalSize != record.fileSize {
            found.append(StoreProblem(
                kind: .originalSize, datasourceId: id, path: "originals/\(id)",
                message: "the original upload is \(originalSize!) bytes; the catalog says \(record.fileSize)", repair: nil))
        }
        switch record.status {
        case .completed:
            if let problem = tableProblem(of: record, originalPresent: originalSize != nil) { found.append(problem) }
        case .processing:
            if !(record.ownerPid.map(Self.isAlive) ?? false) {
                found.append(StoreProblem(
                    kind: .abandonedProcessing, datasourceId: id, path: nil,
                    message: "processing, but its process (\(record.ownerPid.map(String.init) ?? "none")) is gone; an agent starting on the store processes it again",
                    repair: originalSize == nil ? nil : .reprocess(record.id, fromCompleted: false)))
            } else {
                // A live process is loading it: its table and work files are its own.
                files.tables[id] = nil
            }
        case .failed:
            break
        }
        return found
    }

    /// A completed source must show all its rows: the table is there, whole, and holds the
    /// rows and columns the catalog promises.
    private func tableProblem(of record: DataSourceRecord, originalPresent: Bool) -> StoreProblem? {
        let id = record.id.rawValue
        let path = "tables/\(id).sqlite"
        let repair: StoreRepair = originalPresent
            ? .reprocess(record.id, fromCompleted: true)
            : .markFailed(record.id, reason: "its rows were lost and its original upload is missing; upload the file again")
        guard FileManager.default.fileExists(atPath: layout.table(id).path) else {
            return StoreProblem(kind: .tableMissing, datasourceId: id, path: path, message: "completed, but its table is missing", repair: repair)
        }
        do {
            var readingOnly = Configuration()
            readingOnly.readonly = true
            let queue = try DatabaseQueue(path: layout.table(id).path, configuration: readingOnly)
            defer { try? queue.close() }
            let (integrity, rows, columns) = try queue.read { db in
                (try String.fetchOne(db, sql: "PRAGMA quick_check"),
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rows") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pragma_table_info('rows')") ?? 0)
            }
            if integrity != "ok" {
                return StoreProblem(kind: .tableDamaged, datasourceId: id, path: path, message: "SQLite's quick check says: \(integrity ?? "nothing")", repair: repair)
            }
            if rows != (record.rowCount ?? 0) || columns != (record.columns?.count ?? 0) {
                return StoreProblem(
                    kind: .rowCount, datasourceId: id, path: path,
                    message: "the table holds \(rows) rows of \(columns) columns; the catalog says \(record.rowCount ?? 0) of \(record.columns?.count ?? 0)",
                    repair: repair)
            }
        } catch {
            return StoreProblem(kind: .tableDamaged, datasourceId: id, path: path, message: "the table cannot be read: \(error)", repair: repair)
        }
        return nil
    }

    // MARK: Orphan files

    /// Files left over once every catalog entry took its own: what a killed upload, load or
    /// delete leaves behind. `statuses` (by id) decides which table files a source may keep.
    static func orphans(in files: StoreFiles, layout: StoreLayout, statuses: [String: DataSourceStatus]) -> [StoreProblem] {
        var found: [StoreProblem] = []
        for (id, _) in files.originals.sorted(by: { $0.key < $1.key }) {
            found.append(StoreProblem(
                kind: .orphanFile, datasourceId: nil, path: "originals/\(id)",
                message: "an original upload no data source refers to (an interrupted upload or delete)",
                repair: .remove([layout.originals.appendingPathComponent(id)])))
        }
        for (id, names) in files.tables.sorted(by: { $0.key < $1.key }) {
            for name in names.sorted() {
                let isTable = name.hasPrefix(id + ".sqlite")
                if isTable, statuses[id] == .completed { continue }
                let why = switch statuses[id] {
                case nil: "a file of a data source that no longer exists (an interrupted delete)"
                case .completed, .processing: "a work file of an interrupted load"
                case .failed: "a table of a data source whose processing failed"
                }
                found.append(StoreProblem(
                    kind: .orphanFile, datasourceId: statuses[id] == nil ? nil : id, path: "tables/\(name)", message: why,
                    repair: .remove([layout.tables.appendingPathComponent(name)])))
            }
        }
        for name in files.unknown.sorted() {
            found.append(StoreProblem(
                kind: .orphanFile, datasourceId: nil, path: name, message: "a file the store does not make",
                repair: .remove([layout.root.appendingPathComponent(name)])))
        }
        for name in files.secretDrafts.sorted() {
            found.append(StoreProblem(
                kind: .orphanFile, datasourceId: nil, path: name, message: "the draft of a secret an interrupted process was creating",
                repair: .remove([layout.root.appendingPathComponent(name)])))
        }
        return found
    }

    /// Removes the files nothing refers to that an interrupted process of a known kind left
    /// (an agent starting on the store does this when no upload or delete is under way; files
    /// the store does not make are left for `check --repair`).
    static func removeLeftovers(layout: StoreLayout, catalog: Catalog) throws -> [String] {
        try layout.ifNoOperations {
            var files = try StoreFiles(layout: layout)
            files.unknown = []
            let pairs = try catalog.pool.read { db in
                try Row.fetchAll(db, sql: "SELECT id, status FROM datasource").compactMap { row -> (String, DataSourceStatus)? in
                    guard let status = DataSourceStatus(rawValue: row["status"]) else { return nil }
                    return (row["id"], status)
                }
            }
            for (id, status) in pairs {
                files.originals[id] = nil
                // A source being processed (here or elsewhere) keeps its work files.
                if status == .processing { files.tables[id] = nil }
            }
            var removed: [String] = []
            for problem in orphans(in: files, layout: layout, statuses: statuses(pairs)) {
                guard case .remove(let urls) = problem.repair else { continue }
                for url in urls where (try? FileManager.default.removeItem(at: url)) != nil { removed.append(problem.path ?? url.path) }
            }
            return removed
        } ?? []
    }

    static func statuses(_ pairs: [(String, DataSourceStatus)]) -> [String: DataSourceStatus] {
        Dictionary(pairs, uniquingKeysWith: { first, _ in first })
    }

    // MARK: Repair

    /// Does what can be done for each problem and says what it did. Sources to process again
    /// are left `processing` without an owner: the caller then opens the store, whose
    /// recovery claims and processes them (see `LocalBackend.init`).
    public func repair(_ report: StoreCheckReport) throws -> [String] {
        var done: [String] = []
        let catalog = try Catalog(path: layout.catalog.path)
        for problem in report.problems {
            guard let repair = problem.repair else { continue }
            let subject = problem.path ?? problem.datasourceId ?? problem.kind.rawValue
            switch repair {
            case .remove(let urls):
                for url in urls { try? FileManager.default.removeItem(at: url) }
                done.append("removed \(subject)")
            case .chmod(let url, let mode):
                // A file an agent deleted since the check needs no mode.
                guard chmod(url.path, mode) == 0 || errno == ENOENT else { throw StoreCheckError(description: "cannot change the mode of \(url.path): \(String(cString: strerror(errno)))") }
                done.append("set the mode of \(subject) to \(String(mode, radix: 8))")
            case .reprocess(let id, let fromCompleted):
                if fromCompleted {
                    try catalog.requeue(id)
                    for suffix in ["", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: layout.table(id.rawValue).path + suffix) }
                }
                done.append("queued \(id.rawValue) to be processed again from its original")
            case .markFailed(let id, let reason):
                _ = try catalog.finishProcessing(id, from: [.processing, .completed]) { record in
                    record.status = .failed
                    record.processedAt = Timestamp.now().secondsSince1970
                    record.errorMessage = reason
                    record.rowCount = 0
                    record.cleanedRows = 0
                    record.errorCount = 1
                    record.warningCount = 0
                }
                done.append("marked \(id.rawValue) failed: \(reason)")
            case .createSecret:
                _ = try layout.withExclusiveLock { try StoreSecret.loadOrCreate(at: layout.secret) }
                done.append("created a new secret")
            }
        }
        return done
    }
}

/// The files of a store's directories, by the data source they belong to.
struct StoreFiles {
    /// Original uploads by id, with their sizes.
    var originals: [String: Int64] = [:]
    /// File names in `tables/` by the id they start with.
    var tables: [String: [String]] = [:]
    /// Paths (relative to the store) of files in `originals/` or `tables/` that name no id.
    var unknown: [String] = []
    /// `.secret.<pid>.<uuid>` drafts whose process is gone.
    var secretDrafts: [String] = []

    init(layout: StoreLayout) throws {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: layout.originals.path)) ?? [] {
            guard DataSourceID(name) != nil else { unknown.append("originals/\(name)"); continue }
            let size = ((try? fm.attributesOfItem(atPath: layout.originals.appendingPathComponent(name).path))?[.size] as? Int64) ?? 0
            originals[name] = size
        }
        for name in (try? fm.contentsOfDirectory(atPath: layout.tables.path)) ?? [] {
            let id = String(name.prefix { $0 != "." })
            let rest = name.dropFirst(id.count)
            let known = rest.hasPrefix(".sqlite") || rest.hasPrefix(".partial.sqlite")
            guard DataSourceID(id) != nil, known else { unknown.append("tables/\(name)"); continue }
            tables[id, default: []].append(name)
        }
        for name in (try? fm.contentsOfDirectory(atPath: layout.root.path)) ?? [] where name.hasPrefix(".secret.") {
            let pid = name.split(separator: ".").dropFirst().first.flatMap { Int32($0) }
            if let pid, StoreChecker.isAlive(pid) { continue }
            secretDrafts.append(name)
        }
    }
}
