import Logging
import PostgresNIO

/// The schema `datasource_agent`, created and migrated on first use. Each migration runs once,
/// in its own transaction, recorded in `schema_migrations`; all of them run under a session
/// advisory lock, so that agents starting together on a new database wait for the first one
/// instead of racing it to create the same tables.
enum Schema {
    static let name = "datasource_agent"
    /// The key of the advisory lock that serialises migrations (arbitrary, fixed: "dsa-schema").
    static let migrationLock: Int64 = 0x6473_612D_7363_6865
    static let notificationChannel = "datasource_agent_changes"

    static let migrations: [(version: Int, sql: [String])] = [
        (1, [
            """
            CREATE TABLE datasource_agent.datasources (
                id text PRIMARY KEY,
                file_name text NOT NULL,
                content_type text NOT NULL,
                file_size bigint NOT NULL,
                status text NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
                uploaded_at bigint NOT NULL,
                sequence bigserial NOT NULL,
                processed_at bigint,
                row_count bigint,
                cleaned_rows bigint,
                error_count bigint,
                warning_count bigint,
                error_message text,
                columns_json text,
                options_json text,
                estimated_completion bigint,
                lease_owner text,
                lease_heartbeat_at bigint
            )
            """,
            "CREATE INDEX datasources_newest ON datasource_agent.datasources (uploaded_at DESC, sequence DESC)",
            "CREATE INDEX datasources_status ON datasource_agent.datasources (status)",
            """
            CREATE TABLE datasource_agent.originals (
                datasource_id text NOT NULL REFERENCES datasource_agent.datasources (id) ON DELETE CASCADE,
                chunk integer NOT NULL,
                bytes bytea NOT NULL,
                PRIMARY KEY (datasource_id, chunk)
            )
            """,
            """
            CREATE TABLE datasource_agent.processing_issues (
                datasource_id text NOT NULL REFERENCES datasource_agent.datasources (id) ON DELETE CASCADE,
                position integer NOT NULL,
                severity text NOT NULL,
                line bigint NOT NULL,
                column_name text,
                kind text NOT NULL,
                reason text NOT NULL,
                PRIMARY KEY (datasource_id, position)
            )
            """,
            """
            CREATE TABLE datasource_agent.status_changes (
                sequence bigserial PRIMARY KEY,
                datasource_id text NOT NULL,
                previous_status text NOT NULL,
                status text NOT NULL,
                committed_at bigint NOT NULL
            )
            """,
            "CREATE INDEX status_changes_datasource ON datasource_agent.status_changes (datasource_id)",
            """
            CREATE TABLE datasource_agent.store_secret (
                id integer PRIMARY KEY CHECK (id = 1),
                secret bytea NOT NULL
            )
            """,
            "INSERT INTO datasource_agent.store_secret VALUES (1, decode(md5(random()::text) || md5(random()::text), 'hex'))",
        ]),
        // The role `datasources/query` runs under: it may read the sources' tables (granted
        // as each is published) and nothing else. Roles belong to the whole cluster, so it
        // may exist already (another database's store); a login role that may not create
        // roles leaves it out, and `query` then says so.
        (2, [
            """
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datasource_agent_reader') THEN
                    CREATE ROLE datasource_agent_reader NOLOGIN;
                END IF;
                EXECUTE format('GRANT datasource_agent_reader TO %I', current_user);
                GRANT USAGE ON SCHEMA datasource_agent TO datasource_agent_reader;
            EXCEPTION WHEN insufficient_privilege OR duplicate_object OR unique_violation THEN
                RAISE NOTICE 'datasources/query will not be available: %', SQLERRM;
            END
            $$
            """,
        ]),
        // API keys (§10): only each key's SHA-256 is kept.
        (3, [
            """
            CREATE TABLE datasource_agent.api_keys (
                id text PRIMARY KEY,
                name text,
                scope text NOT NULL CHECK (scope IN ('read', 'write')),
                key_hash text NOT NULL UNIQUE,
                created_at bigint NOT NULL,
                last_used_at bigint
            )
            """,
        ]),
        // Spreadsheets report their sheets in `get` (as on a local store); older rows have none.
        // Keys made in the same second are listed in the order they were made.
        (4, [
            "ALTER TABLE datasource_agent.datasources ADD COLUMN sheets_json text",
            "ALTER TABLE datasource_agent.api_keys ADD COLUMN sequence bigserial",
        ]),
        // Originals' chunks compressed with lz4, not pglz: pglz took 2.6 s of the server's
        // time to store a 114 MiB CSV (lz4 0.5 s, half pglz's ratio; uncompressed 0.5 s but
        // twice lz4's size). A server without lz4 (before PostgreSQL 14, or built without it)
        // keeps them uncompressed rather than pay pglz on every upload. `EXECUTE`, so that an
        // older server's parser never sees `SET COMPRESSION`.
        (5, [
            """
            DO $$
            BEGIN
                EXECUTE 'ALTER TABLE datasource_agent.originals ALTER COLUMN bytes SET COMPRESSION lz4';
            EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
                ALTER TABLE datasource_agent.originals ALTER COLUMN bytes SET STORAGE EXTERNAL;
            END
            $$
            """,
        ]),
    ]

    /// Gives the reader role what `datasources/query` needs when it exists but was made (by an
    /// administrator, for a login role that may not create roles) after the store: the schema,
    /// and the tables of sources published before it (each table is granted as it is published
    /// once the role exists). Without the role, or the right to grant, nothing changes and
    /// `query` says why. Run at every start, under the migration lock: a no-op once granted.
    static let readerAccess = """
        DO $$
        DECLARE source record;
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'datasource_agent_reader') THEN
                IF NOT has_schema_privilege('datasource_agent_reader', 'datasource_agent', 'USAGE') THEN
                    GRANT USAGE ON SCHEMA datasource_agent TO datasource_agent_reader;
                END IF;
                FOR source IN
                    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'datasource_agent' AND c.relkind = 'r' AND c.relname LIKE 'rows\\_%'
                        AND NOT has_table_privilege('datasource_agent_reader', c.oid, 'SELECT')
                LOOP
                    EXECUTE format('GRANT SELECT ON datasource_agent.%I TO datasource_agent_reader', source.relname);
                END LOOP;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'datasources/query will not be available: %', SQLERRM;
        END
        $$
        """

    /// Brings the schema to the latest version (a no-op when it is there already).
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("SELECT pg_advisory_lock(\(migrationLock))", logger: logger)
        do {
            try await connection.query("CREATE SCHEMA IF NOT EXISTS datasource_agent", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS datasource_agent.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger)
            var applied = Set<Int>()
            for try await version in try await connection.query("SELECT version FROM datasource_agent.schema_migrations", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                logger.info("migrating the PostgreSQL store to schema version \(migration.version)")
                try await connection.withTransaction(logger: logger) { connection in
                    for statement in migration.sql { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                    try await connection.query("INSERT INTO datasource_agent.schema_migrations (version) VALUES (\(migration.version))", logger: logger)
                }
            }
            try await connection.query(PostgresQuery(unsafeSQL: readerAccess), logger: logger)
        } catch {
            _ = try? await connection.query("SELECT pg_advisory_unlock(\(migrationLock))", logger: logger)
            throw error
        }
        try await connection.query("SELECT pg_advisory_unlock(\(migrationLock))", logger: logger)
    }
}
