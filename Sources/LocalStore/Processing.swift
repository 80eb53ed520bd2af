import DataSourceDomain
import Dispatch
import Foundation
import GRDB
import Synchronization

/// One processing run: its cancellation flag and how far it has got, for estimates.
final class ProcessingJob: Sendable {
    let id: DataSourceID
    let fileSize: Int64
    let startedAt = Date()
    private let state = Mutex<(cancelled: Bool, bytesDone: Int64, rows: Int)>((false, 0, 0))

    init(id: DataSourceID, fileSize: Int64) {
        self.id = id
        self.fileSize = fileSize
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }
    func cancel() { state.withLock { $0.cancelled = true } }
    var rows: Int { state.withLock { $0.rows } }

    func update(bytesDone: Int64, rows: Int) {
        state.withLock { $0.bytesDone = bytesDone; $0.rows = rows }
    }

    /// Start time plus the remaining bytes at the rate measured so far.
    var estimatedCompletion: Timestamp? {
        Timestamp.estimatedCompletion(startedAt: startedAt, bytesDone: state.withLock { $0.bytesDone }, totalBytes: fileSize)
    }
}

/// Runs processing jobs on a fixed pool of worker threads (`maxConcurrent`, started on first
/// use), in the order they were submitted, so that long CPU-bound loads never occupy the
/// threads that answer requests and a burst of uploads queues as data, not as threads.
final class ProcessingScheduler: Sendable {
    private struct Queued: Sendable {
        let job: ProcessingJob
        let work: @Sendable (ProcessingJob) -> Void
    }

    private let maxConcurrent: Int
    private let group = DispatchGroup()
    private let available = DispatchSemaphore(value: 0)
    private let state = Mutex<(queue: [Queued], workers: Int, jobs: [DataSourceID: ProcessingJob])>(([], 0, [:]))
    private let busy = Mutex(0)

    init(maxConcurrent: Int) {
        self.maxConcurrent = max(1, maxConcurrent)
    }

    func submit(id: DataSourceID, fileSize: Int64, work: @escaping @Sendable (ProcessingJob) -> Void) {
        let job = ProcessingJob(id: id, fileSize: fileSize)
        group.enter()
        let startWorker = state.withLock { state -> Bool in
            state.jobs[id] = job
            state.queue.append(Queued(job: job, work: work))
            guard state.workers < maxConcurrent else { return false }
            state.workers += 1
            return true
        }
        available.signal()
        if startWorker {
            let thread = Thread { [self] in runWorker() }
            thread.stackSize = 4 << 20
            thread.name = "processing worker"
            thread.start()
        }
    }

    private func runWorker() {
        while true {
            available.wait()
            guard let next = state.withLock({ $0.queue.isEmpty ? nil : $0.queue.removeFirst() }) else { continue }
            if !next.job.isCancelled {
                busy.withLock { $0 += 1 }
                next.work(next.job)
                busy.withLock { $0 -= 1 }
            }
            state.withLock { if $0.jobs[next.job.id] === next.job { $0.jobs[next.job.id] = nil } }
            group.leave()
        }
    }

    func job(_ id: DataSourceID) -> ProcessingJob? { state.withLock { $0.jobs[id] } }
    /// How many jobs are running now (a load takes threads of its own only when alone).
    var running: Int { busy.withLock { $0 } }
    var hasJobs: Bool { state.withLock { !$0.jobs.isEmpty } }
    func rowsSoFar(_ id: DataSourceID) -> Int? { job(id)?.rows }
    func cancel(_ id: DataSourceID) { job(id)?.cancel() }
    func waitForIdle() { group.wait() }
}

/// Notices every committed status change in the catalog — this process's and any other
/// process's sharing the store — and hands each to the observers exactly once.
final class ChangeWatcher: Sendable {
    private let catalog: Catalog
    private let queue = DispatchQueue(label: "catalog.changes")
    private let lastSeen: Mutex<Int64>
    private let timer: Mutex<TimerHolder?> = Mutex(nil)
    private let handler: Mutex<(@Sendable (StatusChange) -> Void)?> = Mutex(nil)

    init(catalog: Catalog) throws {
        self.catalog = catalog
        lastSeen = Mutex(try catalog.latestChangeSequence())
    }

    /// Starts watching. Where the kernel reports writes to the catalog (inotify), a commit by
    /// any process wakes the watcher at once and an idle agent costs nothing; a slow poll
    /// stays as a safety net. Elsewhere the change log is polled every 40 ms (one indexed
    /// read), which keeps delivery well inside 100 ms.
    func start(_ handler: @escaping @Sendable (StatusChange) -> Void) {
        self.handler.withLock { $0 = handler }
        let watching = watchCatalogWrites()
        let interval: DispatchTimeInterval = watching ? .seconds(2) : .milliseconds(40)
        let source = DispatchSource.makeTimerSource(queue: queue)
        source.schedule(deadline: .now() + interval, repeating: interval, leeway: watching ? .milliseconds(200) : .milliseconds(5))
        source.setEventHandler { [self] in check() }
        source.resume()
        timer.withLock { $0 = TimerHolder(source: source) }
    }

    private let writeWatch = Mutex<ReadSourceHolder?>(nil)

    /// Asks the kernel for writes to the catalog's files (its directory is watched, since
    /// SQLite creates and removes the WAL file as connections come and go).
    private func watchCatalogWrites() -> Bool {
        #if os(Linux)
        let directory = URL(fileURLWithPath: catalog.pool.path).deletingLastPathComponent().path
        let catalogName = URL(fileURLWithPath: catalog.pool.path).lastPathComponent
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return false }
        let mask = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            close(fd)
            return false
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        source.setEventHandler { [self] in
            var relevant = false
            while true {
                let count = read(fd, buffer, 64 * 1024)
                if count <= 0 { break }
                var offset = 0
                while offset + MemoryLayout<inotify_event>.size <= count {
                    let event = (buffer + offset).assumingMemoryBound(to: inotify_event.self)
                    let nameLength = Int(event.pointee.len)
                    if nameLength > 0 {
                        let name = String(cString: (buffer + offset + MemoryLayout<inotify_event>.size).assumingMemoryBound(to: CChar.self))
                        if name.hasPrefix(catalogName), !name.hasSuffix("-shm") { relevant = true }
                    }
                    offset += MemoryLayout<inotify_event>.size + nameLength
                }
            }
            if relevant { check() }
        }
        source.setCancelHandler {
            close(fd)
            buffer.deallocate()
        }
        source.resume()
        writeWatch.withLock { $0 = ReadSourceHolder(source: source) }
        return true
        #else
        return false
        #endif
    }

    /// Stops watching (the process is ending); no observer is called after this returns.
    func stop() {
        timer.withLock { $0?.source.cancel(); $0 = nil }
        writeWatch.withLock { $0?.source.cancel(); $0 = nil }
        handler.withLock { $0 = nil }
    }

    /// Checks at once, after this process committed a change.
    func poke() { queue.async { [self] in check() } }

    private func check() {
        let after = lastSeen.withLock { $0 }
        guard let changes = try? catalog.changes(after: after), !changes.isEmpty else { return }
        lastSeen.withLock { $0 = changes.last!.sequence ?? after }
        let deliver = handler.withLock { $0 }
        for change in changes {
            guard let record = try? catalog.record(change.datasourceId) else { continue }
            var details = record.details
            // Report the status this change committed, even if a later one already followed.
            details.summary.status = change.status
            deliver?(StatusChange(details: details, previousStatus: change.previousStatus))
        }
    }
}

final class ReadSourceHolder: @unchecked Sendable {
    let source: any DispatchSourceRead
    init(source: any DispatchSourceRead) { self.source = source }
}

final class TimerHolder: @unchecked Sendable {
    let source: any DispatchSourceTimer
    init(source: any DispatchSourceTimer) { self.source = source }
}
