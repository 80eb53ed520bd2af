import ArgumentParser
import Foundation
import LocalStore

/// Reads a PDF's words for the agent, in a process of its own (see `PDFReaderProcess`): a
/// PDF that crashes poppler, or makes it allocate without end, ends this process, not the agent.
struct PDFWords: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pdf-words",
        abstract: "Read a PDF's words with their boxes into a file (started by the agent itself for each PDF upload).",
        shouldDisplay: false)

    @Argument(help: "The PDF to read.") var pdf: String
    @Argument(help: "The file to write the words to.") var output: String

    func run() throws {
        ProcessPending.closeInheritedDescriptors()
        // The tests' way to make a reader crash as a crafted PDF could (with the debug methods on).
        let environment = ProcessInfo.processInfo.environment
        if environment["DATASOURCE_AGENT_DEBUG_METHODS"] == "1", environment["DATASOURCE_AGENT_DEBUG_PDF_READER"] == "crash" {
            // Without the Swift runtime's handler, which may print a backtrace and carry on
            // after a raised (not faulting) signal.
            signal(SIGSEGV, SIG_DFL)
            raise(SIGSEGV)
        }
        let status = PDFReaderProcess.runHelper(pdf: pdf, output: output)
        if status != 0 { throw ExitCode(status) }
    }
}

extension PDFWords {
    /// Called before a command opens a local store: its PDF uploads are then read by this
    /// executable's `pdf-words` (without the executable's path they are read in-process).
    static func isolatePDFReading() {
        if let executable = ProcessPending.executablePath() { PDFReaderProcess.useHelper(executable: executable) }
    }
}
