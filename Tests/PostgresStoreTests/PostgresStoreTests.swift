import DataSourceDomain
import Foundation
import PostgresNIO
@testable import PostgresStore
import Testing

@Suite struct StoreURLTests {
    @Test func readsEveryPart() throws {
        let url = try PostgresStoreURL("postgres://alice:s%40cret@db.example.lan:6543/data%20sources?sslmode=require", environment: [:])
        #expect(url.user == "alice" && url.password == "s@cret" && url.host == "db.example.lan" && url.port == 6543)
        #expect(url.database == "data sources" && url.sslMode == "require")
        #expect(url.redacted == "postgres://alice@db.example.lan:6543/data sources")
    }

    @Test func defaultsAsLibpq() throws {
        let url = try PostgresStoreURL("postgresql://bob@localhost/db", environment: [:])
        #expect(url.port == 5432 && url.sslMode == "prefer" && url.password == nil)
    }

    @Test func refusesWhatItCannotHonour() {
        for (text, reason) in [
            ("postgres://bob@localhost/db?sslmode=sometimes", "sslmode must be one of"),
            ("postgres://bob@localhost/db?application_name=x", "unknown parameter application_name"),
            ("postgres://bob@localhost/", "names no database"),
            ("postgres://localhost/db", "names no user"),
            ("/var/lib/store", "expected postgres://"),
        ] {
            do {
                _ = try PostgresStoreURL(text, environment: [:])
                Issue.record("\(text) was accepted")
            } catch {
                #expect("\(error)".contains(reason), "\(text): \(error)")
            }
        }
    }

    @Test func passwordFromTheEnvironmentThenPgpass() throws {
        #expect(try PostgresStoreURL("postgres://bob@h/db", environment: ["PGPASSWORD": "fromenv"]).password == "fromenv")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pgpass-\(UUID().uuidString)")
        try "# comment\nother:5432:db:bob:wrong\nh:*:db:bob:pa\\:ss\n*:*:*:*:fallback\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(try PostgresStoreURL("postgres://bob@h/db", environment: ["PGPASSFILE": file.path]).password == "pa:ss")
        #expect(try PostgresStoreURL("postgres://eve@x/y", environment: ["PGPASSFILE": file.path]).password == "fallback")
        #expect(try PostgresStoreURL("postgres://bob:inurl@h/db", environment: ["PGPASSWORD": "env", "PGPASSFILE": file.path]).password == "inurl")
    }
}

@Suite struct PostgresFilterSQLTests {
    let columns = [
        DataColumn(name: "price", type: .number), DataColumn(name: "category", type: .string),
        DataColumn(name: "in_stock", type: .boolean), DataColumn(name: "day", type: .date), DataColumn(name: "at", type: .datetime),
    ]

    func compile(_ filter: String) throws -> (String, Int) {
        var compiler = PostgresFilterSQL(columns: columns)
        let sql = compiler.compile(try FilterParser.parse(filter, columns: columns))
        return (sql, compiler.bindings.count)
    }

    @Test func valuesAreBoundNeverWritten() throws {
        let (sql, count) = try compile("category = 'x''); DROP TABLE t; --' AND price > 10 OR NOT in_stock")
        #expect(sql == "((c1 = $1 AND c0 > $2) OR (NOT c2 = true))")
        #expect(count == 2)
        #expect(!sql.contains("DROP"))
    }

    @Test func textOperatorsAndLists() throws {
        #expect(try compile("category CONTAINS '%_'").0 == "(strpos(lower(c1), $1) > 0)")
        #expect(try compile("category STARTSWITH 'a'").0 == "(left(lower(c1), char_length($1)) = $1)")
        #expect(try compile("category ENDSWITH 'a'").0 == "(right(lower(c1), char_length($1)) = $1)")
        #expect(try compile("category NOT IN ('a', 'b')") == ("(c1 IS NOT NULL AND c1 NOT IN ($1, $2))", 2))
        #expect(try compile("day IS NULL").0 == "c3 IS NULL")
        #expect(try compile("at >= '2024-03-14T15:30:00Z'") == ("c4 >= $1", 1))
    }
}
