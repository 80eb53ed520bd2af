"""SECURITY.md's claims, tested: no SQL text is built from user input (a static scan of
Sources/), and error answers never echo a key, the store secret or SQL."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from agentproc import ROOT, Agent
from conftest import upload_and_wait
from restproc import RestServer, create_key, http

SOURCES = ROOT / "Sources"

# A file that hands text to SQLite or to PostgreSQL.
EXECUTES_SQL = re.compile(
    r"sql:|sqlite3_prepare|sqlite3_exec|\.execute\(|fetchOne\(|fetchAll\(|fetchCursor\(|ConcurrentCount\(|\.query\(|PostgresQuery")
# A literal postgres-nio turns into a query: each `\(value)` in it is sent as a bind
# parameter ($1, $2, …), never as text; only `\(unescaped: …)` is spliced, and is checked.
BOUND_LITERAL = re.compile(r"(?:\.query\(\s*|:\s*PostgresQuery\s*=\s*)$")
# A string literal is SQL when, its interpolations taken out, it holds a keyword, a `?`
# placeholder, or it builds an identifier (`c\(n)`, `rows.c\(n)`, `sort_c\(n)_…`, `s\(n)`).
SQL_WORD = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|ATTACH|DETACH|FROM|WHERE|VALUES|ORDER|GROUP|"
    r"HAVING|LIMIT|OFFSET|JOIN|UNION|INDEX|VIEW|TABLE|INTO|SET|IS|NULL|AND|OR|NOT|IN|LIKE|GLOB|ASC|DESC|AS|ON)\b")
IDENTIFIER_FRAGMENT = re.compile(r"^(?:rows\.)?(?:sort_)?[cs]\x00[A-Za-z_\x00]*$")

# Every expression interpolated into SQL text, with why it cannot carry user input. Anything
# else interpolated into SQL fails the test: bind it as a `?` parameter, or quote it with a
# helper listed under "quoting" and add it here after review.
ALLOWED = {
    # Quoting helpers: the text is an SQL identifier or string literal whatever it holds.
    "quoted(column.name)": "quoting: SQLQueryEngine.quoted doubles every double quote",
    "quoted(name)": "quoting: SQLQueryEngine.quoted doubles every double quote",
    "uri.replacingOccurrences(of: \"'\", with: \"''\")": "quoting: a string literal with its quotes doubled (the row file's path)",
    # Numbers the code computes: column and source positions, page sizes and offsets (Ints).
    "$0": "an Int position", "$0.index": "an Int position", "index": "an Int position",
    "position": "an Int position", "sortIndex": "an Int position", "sortColumn": "an Int position",
    "column": "an Int position", "keys[i].index": "an Int position", "want": "an Int row count",
    "want - rows.count": "an Int row count", "remainingOffset": "an Int offset",
    # Keywords and operators chosen from enums by the code.
    "direction": "\"ASC\" or \"DESC\"", "order.rawValue": "SortOrder: asc or desc",
"$0.direction == .asc ? \"ASC\" : \"DESC\"": "a keyword",
    "order == .asc ? \"ASC\" : \"DESC\"": "a keyword", "order == .asc ? \">\" : \"<\"": "an operator",
    "keys[i].direction == .asc ? \">\" : \"<\"": "an operator", "op.rawValue": "Filter.Comparison: = != < <= > >=",
    "statuses": "a constant list of the three statuses (Catalog migration)",
    # Fragments the code assembles from the above only (column names c0…cN, keywords, `?`).
    "c": "a column name c<Int>", "columns": "c0, c1, … (TableWriter)", "row": "(?,?,…) (TableWriter)",
    "rows": "(?,?,…),(?,?,…) (TableWriter)", "name": "an index name sort_c<Int>_<asc|desc>",
    "whereSQL": "the compiled filter: column names, operators and ? placeholders",
    "compiled": "the compiled filter", "list": "?, ?, … placeholders", "nulls": "a compiled keyset condition",
    "after": "a compiled keyset condition", "tie": "a compiled keyset condition",
    "beyond(i + 1)": "a compiled keyset condition", "selectList": "column names c<Int>",
    "tableColumns": "column names rows.c<Int>", "segment.orderBy": "ORDER BY of column names and keywords",
    "conditions.joined(separator: \" AND \")": "compiled conditions", "expression": "c<Int> or ds_datetime(c<Int>)",
    "select.isEmpty ? \"NULL AS empty\" : select": "column names AS quoted names",
    # The PostgreSQL store (Sources/PostgresStore). Values in its postgres-nio literals are bind
    # parameters already (see BOUND_LITERAL); these are what it splices as text.
    "CatalogRecord.selection": "a constant list of catalog columns",
    "CatalogRecord.selection.split(separator: \",\").map { \"d.\" + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: \", \")":
        "the constant list of catalog columns, each prefixed d.",
    "RowTable.name(id)": "quoting: datasource_agent.\"rows_<validated UUID>\"",
    "RowTable.name(query.datasourceId)": "quoting: datasource_agent.\"rows_<validated UUID>\"",
    "RowTable.name(source.id)": "quoting: datasource_agent.\"rows_<validated UUID>\"",
    "table": "RowTable.name(id): a quoted name of a validated UUID",
    "definitions": "r bigint, c<Int> <type from an enum> (RowCopy.run)",
    "RowTable.unqualifiedName(id)": "rows_<validated UUID>, the COPY's table (RowCopy.copyTarget)",
    "PostgresSQLQuery.readerRole": "a constant role name", "Self.readerRole": "a constant role name",
    "query.limit": "an Int page size", "query.limit + 1": "an Int page size", "request.limit + 1": "an Int row limit",
    "offset": "an Int offset", "values.sql": "json_build_array of column names c<Int> (RowPageQuery.jsonArray)", "orderBy": "c<Int> ASC/DESC NULLS LAST, r",
    "filterCondition": "the compiled filter: column names, operators and $n placeholders",
    "placeholder": "a $n placeholder", "comparison": "an operator", "after(i + 1)": "a compiled keyset condition",
    "direction == .asc ? \"ASC\" : \"DESC\"": "a keyword",
    "Self.exposed($0, source.columns[$0].type)": "c<Int>, c<Int>::date or to_timestamp(c<Int>)",
    "Self.quoted(source.columns[$0].name)": "quoting: PostgresSQLQuery.quoted doubles every double quote",
    "Self.quoted(name)": "quoting: PostgresSQLQuery.quoted doubles every double quote",
    "select.isEmpty ? \"\" : select.joined(separator: \", \")": "exposed columns AS quoted names",
}

# SQL text joined with + to something, by the text of the join, with why that is safe.
ALLOWED_CONCATENATIONS = {
    '"ORDER BY " +': "QueryEngine.multiColumnSegment: c<Int> column names, IS NULL, ASC/DESC and rowid",
    '"WHERE " +': "conditions of column names, operators and $n placeholders (PostgreSQL catalog and rows)",
    # datasources/query on PostgreSQL: the client's statement is the one SQL text meant to run,
    # wrapped as a subquery and run read-only under the reader role with a timeout.
    '+ "SELECT * FROM (\\n"': "the SQL method's wrapper (PostgresSQLQuery.wrapped)",
    '+ "\\n) AS datasource_agent_query LIMIT \\(request.limit + 1)"': "the SQL method's wrapper (PostgresSQLQuery.wrapped)",
}


def swift_literals(text: str):
    """(line, literal body, start offset) for each string literal, interpolations kept as written."""
    index = 0
    while (start := text.find('"', index)) >= 0:
        if text.startswith('"""', start):
            end = text.find('"""', start + 3)
            yield text.count("\n", 0, start) + 1, text[start + 3:end], start
            index = end + 3
            continue
        k, depth, body = start + 1, 0, []
        while k < len(text):
            c = text[k]
            if c == "\\" and text[k + 1] == "(":
                depth += 1
                body.append("\\(")
                k += 2
                continue
            if depth:
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                elif c == '"':  # a literal inside the interpolation
                    close = text.find('"', k + 1)
                    body.append(text[k:close + 1])
                    k = close + 1
                    continue
                body.append(c)
                k += 1
                continue
            if c == "\\":
                body.append(text[k:k + 2])
                k += 2
                continue
            if c in '"\n':
                break
            body.append(c)
            k += 1
        yield text.count("\n", 0, start) + 1, "".join(body), start
        index = k + 1


def interpolations(literal: str) -> tuple[list[str], str]:
    """The interpolated expressions, and the literal with each replaced by \\0."""
    found, rest, index = [], [], 0
    while (start := literal.find("\\(", index)) >= 0:
        depth, k = 1, start + 2
        while depth and k < len(literal):
            depth += {"(": 1, ")": -1}.get(literal[k], 0)
            k += 1
        rest.append(literal[index:start] + "\x00")
        found.append(literal[start + 2:k - 1])
        index = k
    rest.append(literal[index:])
    return found, "".join(rest)


# An interpolation in single quotes (an SQL string) or compared with an SQL operator.
SPLICED = re.compile(r"'\x00|\x00'|\x00\s*(=|==|!=|<>|<=|>=|<|>)\s")


def is_sql(skeleton: str) -> bool:
    text = skeleton.replace("\x00", " ")
    return bool(SQL_WORD.search(text) or "?" in text or IDENTIFIER_FRAGMENT.match(skeleton) or SPLICED.search(skeleton))


def sql_building_violations(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.swift")):
        text = "\n".join("" if line.lstrip().startswith("//") else line for line in path.read_text().splitlines())
        if not EXECUTES_SQL.search(text):
            continue
        for line, literal, start in swift_literals(text):
            expressions, skeleton = interpolations(literal)
            if not is_sql(skeleton):
                continue
            bound = BOUND_LITERAL.search(text[max(0, start - 80):start]) is not None
            for expression in expressions:
                if bound:
                    if not expression.startswith("unescaped:"):
                        continue  # a bind parameter
                    expression = expression.removeprefix("unescaped:").strip()
                if expression not in ALLOWED:
                    problems.append(f"{path.relative_to(root.parent)}:{line}: \\({expression}) in SQL {literal[:80]!r}")
        # Concatenation: an SQL literal joined to anything with +.
        for match in re.finditer(r'"((?:[^"\\\n]|\\.)*)"\s*\+|\+\s*"((?:[^"\\\n]|\\.)*)"', text):
            literal = match.group(1) if match.group(1) is not None else match.group(2)
            if SQL_WORD.search(interpolations(literal)[1].replace("\x00", " ")) and match.group(0).strip() not in ALLOWED_CONCATENATIONS:
                problems.append(f"{path.relative_to(root.parent)}:{text.count(chr(10), 0, match.start()) + 1}: "
                                f"SQL text concatenated with +: {match.group(0)[:80]!r}")
    return problems


def test_no_sql_text_is_built_from_user_input():
    problems = sql_building_violations(SOURCES)
    assert problems == [], "SQL text built from something not known to be safe:\n" + "\n".join(problems)


def test_the_sql_scan_sees_what_it_guards(tmp_path):
    """The scan finds the SQL the store builds today (so it is not looking at nothing), every
    allowlisted expression is still in use, and a value spliced into SQL is caught."""
    seen = set()
    for path in SOURCES.rglob("*.swift"):
        text = path.read_text()
        if EXECUTES_SQL.search(text):
            for _, literal, _ in swift_literals(text):
                expressions, skeleton = interpolations(literal)
                if is_sql(skeleton):
                    seen.update(e.removeprefix("unescaped:").strip() for e in expressions)
    assert {"whereSQL", "quoted(name)", "c", "op.rawValue"} <= seen
    assert set(ALLOWED) - seen == set(), "allowlisted but no longer interpolated into SQL; remove them"
    every_source = "\n".join(path.read_text() for path in SOURCES.rglob("*.swift"))
    for joined in ALLOWED_CONCATENATIONS:
        assert joined in every_source, f"{joined!r} is allowlisted but no longer in Sources/"

    planted = tmp_path / "Sources" / "Planted.swift"
    planted.parent.mkdir()
    for bad in [
        'try db.execute(sql: "SELECT * FROM rows WHERE c1 = \'\\(query.filter)\'")',
        'try db.execute(sql: "SELECT count(*) FROM rows WHERE c\\(userColumn) > 1")',
        'let sql = "SELECT * FROM rows WHERE label = \'" + label + "\'"; try db.execute(sql: sql)',
        'try db.execute(sql: """\n    SELECT * FROM rows\n    ORDER BY \\(params.sort)\n    """)',
        'try db.execute(sql: "\\(c) = \'\\(value)\'")',
        'try await client.query(PostgresQuery(unsafeSQL: "SELECT * FROM t WHERE name = \'\\(userName)\'"), logger: logger)',
        'try await client.query("SELECT * FROM t ORDER BY \\(unescaped: params.sort)", logger: logger)',
    ]:
        planted.write_text(bad + "\n")
        assert sql_building_violations(tmp_path / "Sources"), bad
    planted.write_text('try db.execute(sql: "SELECT * FROM rows WHERE \\(c) = ?", arguments: [value])\n'
                       'try await client.query("SELECT * FROM t WHERE name = \\(name)", logger: logger)\n')
    assert sql_building_violations(tmp_path / "Sources") == []


WRONG_KEY = "dsa_" + "NotARealKeyButShapedLikeOne-0123456789abcdefgh"
# Text only the store's own SQL would hold (user-written SQL of datasources/query aside).
GENERATED_SQL = ("FROM rows", "sqlite_master", "WHERE c0", "WHERE c1", "ds_contains(", "rowid", "CREATE ", "INSERT INTO")


def test_errors_never_echo_keys_secrets_or_sql(store):
    """Errors provoked over stdio and over HTTP — wrong and revoked keys, bad filters, sorts,
    cursors, paths, SQL — never carry a key presented for authentication, the store secret,
    a stored key hash, or SQL text the store built. (An offending parameter's own value is
    echoed in `details`, as SPEC §6 asks: that is the client's own input, not a secret.)"""
    import sqlite3
    key = create_key(store, "write", "owner")
    read_key = create_key(store, "read", "reader")
    revoked = create_key(store, "read", "gone")
    with sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True) as catalog:
        hashes = [row[0] for row in catalog.execute("SELECT keyHash FROM apiKey")]
        revoked_id = [row[0] for row in catalog.execute("SELECT id FROM apiKey WHERE name = 'gone'")][0]
    from restproc import keys
    keys(store, "revoke", revoked_id)
    raw_secret = (store / "secret").read_bytes()
    secrets = [key, read_key, revoked, WRONG_KEY, *hashes, raw_secret.hex(),
               base64.b64encode(raw_secret).decode().rstrip("="), base64.urlsafe_b64encode(raw_secret).decode().rstrip("=")]
    answers = []
    with Agent(store, env={"DATASOURCE_AGENT_API_KEY": key}) as agent:
        agent.initialize()
        source, _ = upload_and_wait(agent, fileName="s.csv", content="name,price\na,1\nb,2\n")
        id = source["datasourceId"]
        page = agent.call("datasources/data", {"datasourceId": id, "limit": 1, "sort": "price"})
        for method, params in [
            ("datasources/data", {"datasourceId": id, "filter": "name = 'a' AND"}),
            ("datasources/data", {"datasourceId": id, "filter": "price > 'x'"}),
            ("datasources/data", {"datasourceId": id, "filter": "nope > 1"}),
            ("datasources/data", {"datasourceId": id, "filter": " OR ".join(["price > 1"] * 2000)}),
            ("datasources/data", {"datasourceId": id, "sort": "nope"}),
            ("datasources/data", {"datasourceId": id, "cursor": page["pagination"]["nextCursor"] + "x", "sort": "price"}),
            ("datasources/data", {"datasourceId": id, "cursor": page["pagination"]["nextCursor"], "sort": "name"}),
            ("datasources/data", {"datasourceId": id, "columns": ["nope"]}),
            ("datasources/get", {"datasourceId": "not-an-id"}),
            ("datasources/upload", {"path": "/nonexistent/file.csv"}),
            ("datasources/upload", {"path": str(store / "secret")}),
            ("datasources/upload", {"path": str(store / "catalog.sqlite")}),
            ("datasources/query", {"sql": f'SELECT nope FROM "{id}"'}),
            ("datasources/query", {"sql": f'DELETE FROM "{id}"'}),
            ("datasources/query", {"sql": "SELECT * FROM sqlite_master"}),
            ("datasources/query", {"sql": "ATTACH DATABASE 'x' AS y"}),
            ("datasources/export", {"datasourceId": id, "format": "csv", "filter": "nope = 1"}),
        ]:
            reply = agent.response(agent.request(method, params))
            assert "error" in reply, (method, params, reply)
            answers.append((method, params, json.dumps(reply)))
    for presented in (WRONG_KEY, revoked):
        with Agent(store, env={"DATASOURCE_AGENT_API_KEY": presented}) as stranger:
            stranger.initialize()
            reply = stranger.response(stranger.request("datasources/list", {}))
            assert reply["error"]["code"] == -31401
            answers.append(("list", presented, json.dumps(reply)))
    with Agent(store) as stranger:
        stranger.initialize({"processId": None, "capabilities": {}, "initializationOptions": {"apiKey": WRONG_KEY}})
        answers.append(("list", "initializationOptions", json.dumps(stranger.response(stranger.request("datasources/list", {})))))
    with RestServer(store) as server:
        for method, path, use_key, body in [
            ("GET", "/api/v2/datasources", WRONG_KEY, None),
            ("GET", "/api/v2/datasources", revoked, None),
            ("GET", f"/api/v2/datasources/{id}/data?filter=nope%20%3E%201", key, None),
            ("DELETE", f"/api/v2/datasources/{id}", read_key, None),
            ("POST", "/api/v2/query", key, json.dumps({"sql": "SELECT * FROM sqlite_master"}).encode()),
            ("GET", "/downloads/" + id + "?expires=1&signature=" + "A" * 43, None, None),
        ]:
            status, _, answer = http(method, server.base + path, key=use_key, body=body,
                                     headers={"Content-Type": "application/json"} if body else None)
            assert status >= 400, (path, status, answer)
            answers.append((method, path, json.dumps(answer) if not isinstance(answer, bytes) else answer.decode(errors="replace")))
    for where, params, text in answers:
        for secret in secrets:
            assert secret not in text, f"{where} {params}: the answer holds a secret: {text[:300]}"
        for fragment in GENERATED_SQL:
            if fragment in str(params):
                continue  # the client's own SQL, named back as the offending parameter
            assert fragment not in text, f"{where} {params}: the answer carries SQL ({fragment!r}): {text[:300]}"
    assert len(answers) == 26


def test_store_directory_and_secret_are_owner_only(store):
    """The store directory is 0700, so nothing inside it (catalog, row files, originals) is
    reachable by other users whatever the files' own modes; the secret is 0600 as well."""
    with Agent(store) as agent:
        agent.initialize()
        source, _ = upload_and_wait(agent, fileName="s.csv", content="a\n1\n")
        agent.call("datasources/download", {"datasourceId": source["datasourceId"]})
    assert store.stat().st_mode & 0o777 == 0o700
    assert (store / "secret").stat().st_mode & 0o777 == 0o600
