import DataSourceDomain
import Dispatch
import Foundation
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
        let done = state.withLock { $0.bytesDone }
        let elapsed = Date().timeIntervalSince(startedAt)
        guard done > 0, elapsed > 0 else { return nil }
        let remaining = Double(max(0, fileSize - done)) / (Double(done) / elapsed)
        return Timestamp(secondsSince1970: Int64((Date().timeIntervalSince1970 + remaining).rounded(.up)))
    }
}

/// Runs processing jobs on their own threads, at most `maxConcurrent` at once, so that long
/// CPU-bound loads never occupy the threads that answer requests.
final class ProcessingScheduler: Sendable {
    private let slots: DispatchSemaphore
    private let group = DispatchGroup()
    private let jobs = Mutex<[DataSourceID: ProcessingJob]>([:])

    init(maxConcurrent: Int) {
        slots = DispatchSemaphore(value: max(1, maxConcurrent))
    }

    func submit(id: DataSourceID, fileSize: Int64, work: @escaping @Sendable (ProcessingJob) -> Void) {
        let job = ProcessingJob(id: id, fileSize: fileSize)
        jobs.withLock { $0[id] = job }
        group.enter()
        let thread = Thread { [self] in
            slots.wait()
            defer {
                slots.signal()
                jobs.withLock { if $0[id] === job { $0[id] = nil } }
                group.leave()
            }
            if !job.isCancelled { work(job) }
        }
        thread.stackSize = 4 << 20
        thread.name = "processing \(id)"
        thread.start()
    }

    func job(_ id: DataSourceID) -> ProcessingJob? { jobs.withLock { $0[id] } }
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

    func start(_ handler: @escaping @Sendable (StatusChange) -> Void) {
        self.handler.withLock { $0 = handler }
        let source = DispatchSource.makeTimerSource(queue: queue)
        // Polling the change log is one indexed read; 40 ms keeps delivery well inside 100 ms.
        source.schedule(deadline: .now() + .milliseconds(40), repeating: .milliseconds(40), leeway: .milliseconds(5))
        source.setEventHandler { [self] in check() }
        source.resume()
        timer.withLock { $0 = TimerHolder(source: source) }
    }

    /// Checks at once, after this process committed a change.
    func poke() { queue.async { [self] in check() } }

    private func check() {
        let after = lastSeen.withLock { $0 }
        guard let changes = try? catalog.changes(after: after), !changes.isEmpty else { return }
        lastSeen.withLock { $0 = changes.last!.sequence ?? after }
        let deliver = handler.withLock { $0 }
        for change in changes {
            guard let id = DataSourceID(change.datasourceId),
                let record = try? catalog.record(id),
                let previous = DataSourceStatus(rawValue: change.previousStatus)
            else { continue }
            var details = record.details
            // Report the status this change committed, even if a later one already followed.
            if let status = DataSourceStatus(rawValue: change.status) { details.summary.status = status }
            deliver?(StatusChange(details: details, previousStatus: previous))
        }
    }
}

final class TimerHolder: @unchecked Sendable {
    let source: any DispatchSourceTimer
    init(source: any DispatchSourceTimer) { self.source = source }
}
