import ArgumentParser
import Foundation
import DataSourceDomain
import JSONKit
import LocalStore

/// `check --store DIR [--repair]`: the store's consistency checker (`StoreChecker`). The
/// report goes to stdout; the exit status says whether the store is consistent, so that
/// scripts and the fault-injection tests can rely on it.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a local store: catalog against files, orphan files, lost rows, abandoned processing, permissions.",
        discussion: """
            Prints a JSON report {store, consistent, dataSources, problems, repairs} (--format table for \
            people). Exit status: 0 consistent, 1 inconsistent (after --repair: something is left that \
            could not be repaired), 2 the store cannot be checked. Safe to run while agents use the store.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Flag(name: .long, help: "Fix what can be fixed: remove orphan files, process abandoned or lost sources again from their originals (or mark them failed when the original is gone), tighten permissions; then check again.")
    var repair = false

    @Option(name: .long, help: "json (default) or table.")
    var format: String = "json"

    func validate() throws {
        guard ["json", "table"].contains(format) else { throw ValidationError("--format must be json or table") }
    }

    func run() throws {
        let logger = try storeOptions.bootstrapLogging()
        if try storeOptions.postgresURL() != nil {
            // Its tables, originals and catalog change in one transaction each, and an agent
            // that dies leaves a lease another agent takes over: nothing for a file check to find.
            FileHandle.standardError.write(Data("""
                check: checks a store directory; a PostgreSQL store keeps its consistency in the database's                 transactions (see protocol/postgres.md)

                """.utf8))
            throw ExitCode(2)
        }
        let checker = StoreChecker(root: storeOptions.storeURL())
        var report: StoreCheckReport
        do {
            report = try checker.run()
            if repair, !report.isConsistent {
                let done = try checker.repair(report)
                // The store's own recovery, as at an agent's start: it claims the sources left
                // processing by processes that are gone, processes them, and sweeps leftovers.
                let backend = try LocalBackend(root: checker.layout.root, logger: logger)
                backend.waitForIdle()
                backend.stopWatchingChanges()
                report = try checker.run()
                report.repairs = done
            }
        } catch {
            FileHandle.standardError.write(Data("check: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if format == "json" {
            print(String(decoding: report.json.prettyPrinted(indent: 2), as: UTF8.self))
        } else {
            printTable(report)
        }
        if !report.isConsistent { throw ExitCode(1) }
    }

    private func printTable(_ report: StoreCheckReport) {
        let counts = report.counts
        print("store \(report.store.path): \(report.isConsistent ? "consistent" : "INCONSISTENT")")
        print("data sources: \(counts.values.reduce(0, +)) (\(counts[.completed] ?? 0) completed, \(counts[.processing] ?? 0) processing, \(counts[.failed] ?? 0) failed)")
        for repair in report.repairs { print("repaired: \(repair)") }
        for problem in report.problems {
            let subject = problem.path ?? problem.datasourceId ?? ""
            print("\(problem.kind.rawValue)  \(subject)  \(problem.message)\(problem.repairDescription.map { "  [--repair: \($0)]" } ?? "")")
        }
    }
}
