import Foundation
import NIOSSL
import PostgresNIO

/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=disable|prefer|require|verify-full]`
/// (SPEC §12). A password absent from the URL comes from `PGPASSWORD`, then `~/.pgpass`.
public struct PostgresStoreURL: Sendable, Equatable {
    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode: String

    public static let sslModes = ["disable", "prefer", "require", "verify-full"]

    /// Whether `--store` names a PostgreSQL database rather than a directory.
    public static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// The reason is said in words; the password never appears in it.
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard Self.isPostgresURL(text), let components = URLComponents(string: text) else {
            throw Invalid(description: "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]")
        }
        guard let user = components.percentEncodedUser?.removingPercentEncoding, !user.isEmpty else {
            throw Invalid(description: "the URL names no user (postgres://USER@HOST/DB)")
        }
        guard let host = components.host, !host.isEmpty else { throw Invalid(description: "the URL names no host") }
        let database = String(components.path.drop(while: { $0 == "/" })).removingPercentEncoding ?? ""
        guard !database.isEmpty, !database.contains("/") else { throw Invalid(description: "the URL names no database (postgres://USER@HOST/DB)") }
        var sslMode = "prefer"
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, Self.sslModes.contains(value) else {
                    throw Invalid(description: "sslmode must be one of \(Self.sslModes.joined(separator: ", "))")
                }
                sslMode = value
            default:
                throw Invalid(description: "unknown parameter \(item.name) (only sslmode is read)")
            }
        }
        self.user = user
        self.host = host
        self.port = components.port ?? 5432
        self.database = database
        self.sslMode = sslMode
        self.password = components.percentEncodedPassword?.removingPercentEncoding
            ?? environment["PGPASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
            ?? Self.passwordFile(environment: environment, host: host, port: components.port ?? 5432, database: database, user: user)
    }

    /// The first matching line of `~/.pgpass` (or `PGPASSFILE`): `host:port:db:user:password`, `*` matching anything.
    static func passwordFile(environment: [String: String], host: String, port: Int, database: String, user: String) -> String? {
        let path = environment["PGPASSFILE"] ?? (environment["HOME"].map { $0 + "/.pgpass" } ?? "")
        guard !path.isEmpty, let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var fields: [String] = []
            var current = ""
            var escaped = false
            for character in line {
                if escaped { current.append(character); escaped = false } else if character == "\\" { escaped = true } else if character == ":" {
                    fields.append(current); current = ""
                } else { current.append(character) }
            }
            fields.append(current)
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    /// Where logs may say which store is open: no password.
    public var redacted: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    func clientConfiguration() -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS = switch tlsChoice {
        case .disable: .disable
        case .prefer(let configuration): .prefer(configuration)
        case .require(let configuration): .require(configuration)
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.minimumConnections = 0
        configuration.options.maximumConnections = 8
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }

    /// One connection outside the pool (`PostgresBackend.probe`), with the pool's TLS.
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS = switch tlsChoice {
        case .disable: .disable
        case .prefer(let configuration): .prefer(try NIOSSLContext(configuration: configuration))
        case .require(let configuration): .require(try NIOSSLContext(configuration: configuration))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }

    private enum TLSChoice {
        case disable
        case prefer(TLSConfiguration)
        case require(TLSConfiguration)
    }

    private var tlsChoice: TLSChoice {
        switch sslMode {
        case "disable":
            return .disable
        case "verify-full":
            return .require(.makeClientConfiguration())
        default:
            // libpq's prefer and require encrypt without checking the server's certificate.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            return sslMode == "require" ? .require(configuration) : .prefer(configuration)
        }
    }
}
