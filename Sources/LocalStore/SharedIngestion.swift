import DataSourceDomain
import Foundation

/// Processing for a store that keeps its rows elsewhere (the PostgreSQL store): the same
/// pipeline as the local store (readers, dialect and header detection, type inference,
/// cleaning, issues, the reload when a value does not fit) with its insert stage's sink
/// encoding the typed rows as `COPY` data for a `CopyTarget` instead of writing a table
/// file. Sharing the pipeline whole is what makes a source's columns, types, stats and
/// issues identical on both stores.
public enum SharedIngestion {
    /// What processing found, as `get` reports it.
    public struct Outcome: Sendable {
        public var columns: [DataColumn]
        public var rowCount: Int
        public var stats: ProcessingStats
        public var issues: [ProcessingIssue]
        /// A spreadsheet's sheet names and the sheet read; nil for other formats.
        public var sheets: SpreadsheetSheets?
    }

    /// The file cannot be processed (the source fails with this message).
    public struct Failure: Error, Sendable {
        public var message: String
        public init(message: String) { self.message = message }
    }

    public struct Cancelled: Error, Sendable {}

    /// Processes `source`, sending its rows to `target` (each load from `begin` to `end`, or
    /// `abandon`ed). Errors `target` throws are rethrown as they are; a file that cannot be
    /// processed throws `Failure`, a cancelled load `Cancelled`. `workDirectory` holds the
    /// scratch files some formats need (UTF-16 transcoded, a spreadsheet's shared strings).
    public static func process(
        source: URL, contentType: String, options: ParseOptions, into target: any CopyTarget, format: CopyFormat, workDirectory: URL,
        isCancelled: @escaping () -> Bool, progress: @escaping (_ bytesDone: Int64, _ rows: Int) -> Void
    ) throws -> Outcome {
        do {
            let pipeline = try IngestionPipeline(
                source: source, contentType: contentType, options: options,
                output: workDirectory.appendingPathComponent("load-\(UUID().uuidString)"), workDirectory: workDirectory,
                isCancelled: isCancelled, progress: progress)
            pipeline.makeSink = { types in try CopySink(target: target, types: types, format: format) }
            let result = try pipeline.run()
            return Outcome(columns: result.columns, rowCount: result.rowCount, stats: result.stats, issues: result.issues, sheets: result.sheets)
        } catch is IngestionPipeline.Cancelled {
            throw Cancelled()
        } catch let failure as IngestionFailure {
            throw Failure(message: failure.message)
        }
    }

    /// The content type of an upload that named none, from its name and first bytes.
    public static func guessContentType(fileName: String, prefix: [UInt8]) -> String {
        ContentTypeGuess.guess(fileName: fileName, prefix: prefix)
    }
}
