import ArgumentParser
import DataSourceDomain
import Foundation
import JSONKit
import LocalStore

/// `keys create|list|revoke` (§10): API keys of a store. Once a store has a key, every
/// session must present one (`initializationOptions.apiKey` or `DATASOURCE_AGENT_API_KEY`).
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the API keys of a store (once it has one, every session must present a key).",
        subcommands: [Create.self, List.self, Revoke.self])

    static func openStore(_ options: StoreOptions) throws -> LocalBackend {
        let logger = try options.bootstrapLogging()
        PDFWords.isolatePDFReading()
        return try LocalBackend(root: options.storeURL(), logger: logger)
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key and print it, once, alone on stdout (only its hash is stored).")
        @OptionGroup var storeOptions: StoreOptions
        @Option(name: .long, help: ArgumentHelp("read (every method that only reads) or write (also upload and delete).", valueName: "SCOPE"))
        var scope: KeyScope
        @Option(name: .long, help: "A name to recognise the key by in keys list.")
        var name: String?

        func run() throws {
            let (_, key) = try Keys.openStore(storeOptions).createKey(scope: scope, name: name)
            print(key)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys: a JSON array of {id, name, scope, createdAt, lastUsedAt}.")
        @OptionGroup var storeOptions: StoreOptions
        @Option(name: .long, help: "json (default) or table.")
        var format: String = "json"

        func validate() throws {
            guard ["json", "table"].contains(format) else { throw ValidationError("--format must be json or table") }
        }

        func run() throws {
            let keys = try Keys.openStore(storeOptions).listKeys()
            if format == "json" {
                print(String(decoding: JSONValue.array(keys.map(\.json)).prettyPrinted(indent: 2), as: UTF8.self))
                return
            }
            let rows = [["id", "name", "scope", "createdAt", "lastUsedAt"]] + keys.map {
                [$0.id, $0.name ?? "", $0.scope.rawValue, $0.createdAt.iso8601, $0.lastUsedAt?.iso8601 ?? "never"]
            }
            let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key; sessions using it are refused from their next request on.")
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The key's id, as keys list shows it.")
        var id: String

        func run() throws {
            guard try Keys.openStore(storeOptions).revokeKey(id: id) else {
                FileHandle.standardError.write(Data("no key with id \(id)\n".utf8))
                throw ExitCode.failure
            }
        }
    }
}

extension KeyScope: ExpressibleByArgument {}
