import ArgumentParser
import DataSourceDomain
import Foundation
import JSONKit
import LocalStore
import PostgresStore

/// `keys create|list|revoke` (§10): API keys of a store. Once a store has a key, every
/// session must present one (`initializationOptions.apiKey` or `DATASOURCE_AGENT_API_KEY`).
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the API keys of a store (once it has one, every session must present a key).",
        subcommands: [Create.self, List.self, Revoke.self])

    /// The store's keys, in a directory or in a PostgreSQL database; `body` runs, then the
    /// store is closed.
    static func withStore<T>(_ options: StoreOptions, _ body: (any KeyManager) async throws -> T) async throws -> T {
        let logger = try options.bootstrapLogging()
        if let url = try options.postgresURL() {
            let store = try await PostgresBackend.open(url, logger: logger, serving: false)
            do {
                let result = try await body(store)
                await store.shutDown()
                return result
            } catch {
                await store.shutDown()
                throw error
            }
        }
        PDFWords.isolatePDFReading()
        return try await body(try LocalBackend(root: options.storeURL(), logger: logger))
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key and print it, once, alone on stdout (only its hash is stored).")
        @OptionGroup var storeOptions: StoreOptions
        @Option(name: .long, help: ArgumentHelp("read (every method that only reads) or write (also upload and delete).", valueName: "SCOPE"))
        var scope: KeyScope
        @Option(name: .long, help: "A name to recognise the key by in keys list.")
        var name: String?

        func run() async throws {
            let (_, key) = try await Keys.withStore(storeOptions) { try await $0.createKey(scope: scope, name: name) }
            print(key)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys: a JSON array of {id, name, scope, createdAt, lastUsedAt}.")
        @OptionGroup var storeOptions: StoreOptions
        @Option(name: .long, help: "json (default) or table.")
        var format: String = "json"

        func validate() throws {
            guard ["json", "table"].contains(format) else { throw ValidationError("--format must be json or table") }
        }

        func run() async throws {
            let keys = try await Keys.withStore(storeOptions) { try await $0.listKeys() }
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

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key; sessions using it are refused from their next request on.")
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The key's id, as keys list shows it.")
        var id: String

        func run() async throws {
            guard try await Keys.withStore(storeOptions, { try await $0.revokeKey(id: id) }) else {
                FileHandle.standardError.write(Data("no key with id \(id)\n".utf8))
                throw ExitCode.failure
            }
        }
    }
}

extension KeyScope: ExpressibleByArgument {}

/// What the `keys` commands need of a store, local or on PostgreSQL.
protocol KeyManager {
    func createKey(scope: KeyScope, name: String?) async throws -> (info: APIKeyInfo, key: String)
    func listKeys() async throws -> [APIKeyInfo]
    func revokeKey(id: String) async throws -> Bool
}

extension LocalBackend: KeyManager {}
extension PostgresBackend: KeyManager {}
