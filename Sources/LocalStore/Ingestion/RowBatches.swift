import Dispatch
import Foundation
import GRDBSQLite
import Synchronization

/// Rows converted by the convert stage and ready to bind: per cell a kind and an 8-byte
/// payload (an integer, a double's bits, or where the cell's text ends in `text`; it starts
/// where the previous text cell of the batch ended), row after row.
final class RowBatch {
    enum Kind: UInt8 { case null, int, double, text }

    let columns: Int
    /// Rows per batch: a full batch is handed to the insert stage.
    let capacity: Int
    /// The text bytes that make a batch full before `capacity` rows, so that wide or long
    /// rows keep batches small too.
    static let textLimit = 4 << 20

    private(set) var kinds: UnsafeMutablePointer<UInt8>
    private(set) var payloads: UnsafeMutablePointer<Int64>
    private(set) var text: UnsafeMutablePointer<UInt8>
    private var textCapacity: Int
    private(set) var textCount = 0
    private(set) var cells = 0
    private(set) var rows = 0

    init(columns: Int, capacity: Int) {
        self.columns = columns
        self.capacity = capacity
        kinds = .allocate(capacity: columns * capacity)
        payloads = .allocate(capacity: columns * capacity)
        textCapacity = 1 << 16
        text = .allocate(capacity: textCapacity)
    }

    deinit {
        kinds.deallocate()
        payloads.deallocate()
        text.deallocate()
    }

    var isFull: Bool { rows >= capacity || textCount >= Self.textLimit }

    func reset() {
        cells = 0
        rows = 0
        textCount = 0
    }

    @inline(__always) func appendNull() {
        kinds[cells] = Kind.null.rawValue
        cells += 1
    }

    @inline(__always) func append(int value: Int64) {
        kinds[cells] = Kind.int.rawValue
        payloads[cells] = value
        cells += 1
    }

    @inline(__always) func append(double value: Double) {
        kinds[cells] = Kind.double.rawValue
        payloads[cells] = Int64(bitPattern: value.bitPattern)
        cells += 1
    }

    @inline(__always) func append(text bytes: UnsafeBufferPointer<UInt8>) {
        let count = bytes.count
        if textCount + count > textCapacity { growText(to: textCount + count) }
        if count > 0 { (text + textCount).update(from: bytes.baseAddress!, count: count) }
        textCount += count
        kinds[cells] = Kind.text.rawValue
        payloads[cells] = Int64(textCount)
        cells += 1
    }

    func append(text string: String) {
        var string = string
        string.withUTF8 { append(text: $0) }
    }

    @inline(__always) func endRow() {
        rows += 1
    }

    private func growText(to needed: Int) {
        var capacity = textCapacity
        while capacity < needed { capacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        grown.update(from: text, count: textCount)
        text.deallocate()
        text = grown
        textCapacity = capacity
    }
}

/// The insert stage: a thread of its own that hands each batch the convert stage fills to
/// the load's `RowSink` (binds and steps them into SQLite, or encodes them as `COPY` data),
/// while the convert stage converts the next ones. Batches
/// circulate between the two through a bounded queue (`depth` batches in all, so memory
/// stays bounded whatever the file's size). A failure on either side stops both: the
/// insert stage's error is thrown to the convert stage at its next hand-over, and the
/// convert stage's own errors `abort` the insert stage before the sink is abandoned.
final class BatchInserter: @unchecked Sendable {
    private let sink: any RowSink
    private let condition = NSCondition()
    private var free: [RowBatch]
    private var full: [RowBatch] = []
    private var producing = true
    private var aborted = false
    private var failure: (any Error)?
    private var running = true
    private let done = DispatchSemaphore(value: 0)
    private(set) var rowsInserted = 0

    /// Without a thread (`threaded: false`), each batch is inserted as it is submitted.
    private let threaded: Bool

    init(
        sink: any RowSink, columns: Int, rowsPerBatch: Int, depth: Int = 3, threaded: Bool = true, threads: StageThreads = StageThreads()
    ) {
        self.sink = sink
        self.threaded = threaded
        free = (0..<(threaded ? max(2, depth) : 1)).map { _ in RowBatch(columns: columns, capacity: rowsPerBatch) }
        guard threaded else {
            running = false
            return
        }
        threads.started()
        let thread = Thread { [self] in
            insertLoop()
            threads.ended()
        }
        thread.stackSize = 1 << 20
        thread.name = "ingest insert"
        thread.start()
    }

    /// An empty batch to fill; waits while every batch is queued or being inserted.
    func emptyBatch() throws -> RowBatch {
        condition.lock()
        defer { condition.unlock() }
        while free.isEmpty, failure == nil { condition.wait() }
        if let failure { throw failure }
        let batch = free.removeLast()
        batch.reset()
        return batch
    }

    /// Hands a filled batch to the insert stage.
    func submit(_ batch: RowBatch) throws {
        guard threaded else {
            try sink.write(batch)
            rowsInserted += batch.rows
            free.append(batch)
            return
        }
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        full.append(batch)
        condition.broadcast()
    }

    /// Waits until every submitted row is inserted; throws the insert stage's error if any.
    func finish() throws {
        guard threaded else { return }
        condition.lock()
        producing = false
        condition.broadcast()
        condition.unlock()
        done.wait()
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
    }

    /// Stops the insert stage without inserting what is queued, and waits for it to stop, so
    /// that the sink may be abandoned. Does nothing once the stage has stopped.
    func abort() {
        condition.lock()
        let wasRunning = running
        aborted = true
        producing = false
        running = false
        condition.broadcast()
        condition.unlock()
        if wasRunning { done.wait() }
    }

    private func insertLoop() {
        while true {
            condition.lock()
            while full.isEmpty, producing, !aborted { condition.wait() }
            if aborted || full.isEmpty {
                running = false
                condition.unlock()
                done.signal()
                return
            }
            let batch = full.removeFirst()
            condition.unlock()
            do {
                try sink.write(batch)
            } catch {
                condition.lock()
                failure = error
                running = false
                condition.broadcast()
                condition.unlock()
                done.signal()
                return
            }
            condition.lock()
            rowsInserted += batch.rows
            free.append(batch)
            condition.broadcast()
            condition.unlock()
        }
    }

}

/// Counts the stage threads (reading, inserting) of one load that have not ended yet. The
/// count is per load, not per process, so a test can tell that a failed or cancelled load
/// stopped its own threads while other loads run beside it.
final class StageThreads: Sendable {
    private let running = Atomic<Int>(0)

    var count: Int { running.load(ordering: .sequentiallyConsistent) }
    func started() { running.add(1, ordering: .sequentiallyConsistent) }
    func ended() { running.subtract(1, ordering: .sequentiallyConsistent) }
}
