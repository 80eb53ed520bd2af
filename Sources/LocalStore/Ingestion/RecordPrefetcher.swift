import Dispatch
import Foundation
import Synchronization

/// Runs a `RecordReader` on a thread of its own, a batch of records ahead of its consumer:
/// the reading and tokenizing of the next records overlaps the cleaning and converting of
/// these. Records are handed over by swapping, so their buffers circulate between the two
/// threads and nothing is copied or allocated per record. At most `depth` batches exist, each
/// at most `recordsPerBatch` records or about `batchBytes` bytes;
/// the reader's error is thrown after the records read before it. Releasing the prefetcher
/// (at the end of a load, or when it stops early) stops the thread and waits for it.
final class RecordPrefetcher: RecordReader {
    private final class Batch {
        var records: [Record]
        var count = 0
        var bytesConsumed: Int64 = 0
        /// The last batch: the source ended (or failed) after its records.
        var last = false
        var failure: (any Error)?

        init(capacity: Int) { records = [Record](repeating: Record(), count: capacity) }
    }

    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var free: [Batch]
        var full: [Batch] = []
        var stopping = false
        var reader: any RecordReader
        let done = DispatchSemaphore(value: 0)

        init(reader: any RecordReader, batches: [Batch]) {
            self.reader = reader
            free = batches
        }

        /// The reading thread: fills free batches until the source ends, fails or is stopped.
        func produce() {
            while true {
                condition.lock()
                while free.isEmpty, !stopping { condition.wait() }
                if stopping {
                    condition.unlock()
                    return
                }
                let batch = free.removeLast()
                condition.unlock()
                batch.count = 0
                batch.last = false
                batch.failure = nil
                do {
                    var bytes = 0
                    while batch.count < batch.records.count, bytes < RecordPrefetcher.batchBytes {
                        // A slot keeps its buffers from record to record, unless a long record
                        // made them large: memory follows the batches' bytes, not the longest
                        // record times the number of slots.
                        if batch.records[batch.count].bytes.capacity > RecordPrefetcher.keptCapacity
                            || batch.records[batch.count].ends.capacity > RecordPrefetcher.keptCapacity / 8
                        {
                            batch.records[batch.count] = Record()
                        }
                        guard try reader.next(into: &batch.records[batch.count]) else {
                            batch.last = true
                            break
                        }
                        bytes += batch.records[batch.count].bytes.count
                        batch.count += 1
                    }
                } catch {
                    batch.failure = error
                    batch.last = true
                }
                batch.bytesConsumed = reader.bytesConsumed
                condition.lock()
                full.append(batch)
                condition.broadcast()
                condition.unlock()
                if batch.last { return }
            }
        }
    }

    private let shared: Shared
    /// A batch ends after this many bytes of records, or at its number of records.
    static let batchBytes = 4 << 20
    /// Buffers larger than this (bytes; entries times 8 for field ends) are not kept in a slot.
    static let keptCapacity = 1 << 14
    /// Counts this prefetcher's reading thread while it runs.
    let threads: StageThreads
    private var current: Batch?
    private var index = 0
    let declaredColumns: [String]?
    private(set) var bytesConsumed: Int64

    init(_ reader: any RecordReader, recordsPerBatch: Int = 2048, depth: Int = 3, threads: StageThreads = StageThreads()) {
        declaredColumns = reader.declaredColumns
        bytesConsumed = reader.bytesConsumed
        shared = Shared(reader: reader, batches: (0..<max(2, depth)).map { _ in Batch(capacity: max(1, recordsPerBatch)) })
        self.threads = threads
        threads.started()
        let thread = Thread { [shared] in
            shared.produce()
            threads.ended()
            shared.done.signal()
        }
        // As much stack as the processing workers: JSON readers recurse into nested values.
        thread.stackSize = 4 << 20
        thread.name = "ingest read"
        thread.start()
    }

    deinit {
        shared.condition.lock()
        shared.stopping = true
        shared.condition.broadcast()
        shared.condition.unlock()
        shared.done.wait()
    }

    func next(into record: inout Record) throws -> Bool {
        while true {
            if let batch = current {
                if index < batch.count {
                    swap(&record, &batch.records[index])
                    index += 1
                    return true
                }
                if batch.last {
                    if let failure = batch.failure { throw failure }
                    return false
                }
                shared.condition.lock()
                shared.free.append(batch)
                shared.condition.broadcast()
                shared.condition.unlock()
                current = nil
            }
            shared.condition.lock()
            while shared.full.isEmpty { shared.condition.wait() }
            let batch = shared.full.removeFirst()
            shared.condition.unlock()
            current = batch
            index = 0
            bytesConsumed = batch.bytesConsumed
        }
    }
}
