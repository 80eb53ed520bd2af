"""`python -m datasource_agent VERB …`: the shell client's verbs. Results go to stdout (JSON,
a table or CSV; exit 0); errors to stderr as JSON (exit 1)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import urllib.request
from typing import Any, Callable, Dict, List, Optional

from .client import Client
from .errors import DatasourceAgentError
from .formatting import FORMATS, render

EPILOG = """\
The agent command is --agent, else $DATASOURCE_AGENT (a command line), else datasource-agent on
PATH (install it with scripts/install from the repository). $DATASOURCE_AGENT_STORE is passed on.
Results go to stdout; an error is printed on stderr as JSON {error, code, details} and the exit
status is 1 (2 for a usage error)."""


class _Progress:
    """Shows `$/progress` on stderr: a bar on a terminal, else one line per notification."""

    def __init__(self) -> None:
        self.interactive = sys.stderr.isatty()
        self.open = False

    def __call__(self, value: Dict[str, Any]) -> None:
        percent = value.get("percentage")
        message = value.get("message") or value.get("title") or ""
        if self.interactive:
            if value.get("kind") == "end":
                sys.stderr.write("\r[" + "#" * 30 + "] 100% " + message + "\n")
                self.open = False
            else:
                filled = min(30, int((percent or 0) * 30 / 100))
                sys.stderr.write("\r[" + "#" * filled + "-" * (30 - filled) + f"] {int(percent or 0):3d}% {message}   ")
                self.open = True
        else:
            sys.stderr.write(f"{value.get('kind')}: {'' if percent is None else str(percent) + '% '}{message}\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.open:
            sys.stderr.write("\n")
            self.open = False


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Given before or after the verb; SUPPRESS keeps a verb's default from hiding a global one.
    common.add_argument("--format", choices=FORMATS, default=argparse.SUPPRESS,
                        help="output: json (indented), table or csv (RFC 4180); "
                             "default: table when stdout is a terminal, else json")
    common.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS,
                        help="the agent's store directory (passed to the agent as --store; "
                             "default: $DATASOURCE_AGENT_STORE, else the agent's default)")
    common.add_argument("--agent", metavar="COMMAND", default=argparse.SUPPRESS,
                        help="the agent command line (default: $DATASOURCE_AGENT, then datasource-agent on PATH)")

    parser = argparse.ArgumentParser(
        prog="python -m datasource_agent", parents=[common], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A command-line client for datasource-agent: spawns the agent, calls one method, prints the result.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help, description=help)

    def paging(p: argparse.ArgumentParser, default_limit: int, max_limit: int) -> None:
        p.add_argument("--page", type=int, metavar="N", help="page number (default 1)")
        p.add_argument("--limit", type=int, metavar="N", help=f"items per page (default {default_limit}, max {max_limit})")

    p = verb("list", "list data sources, newest first")
    p.add_argument("--status", choices=("processing", "completed", "failed"), help="only data sources in this status")
    paging(p, 20, 100)

    p = verb("get", "show a data source: its columns, row count and processing stats")
    p.add_argument("id", metavar="ID", help="the datasourceId")

    p = verb("data", "show a page of a data source's rows")
    p.add_argument("id", metavar="ID", help="the datasourceId")
    p.add_argument("--filter", metavar="EXPR", help="a filter expression, e.g. \"price > 100 AND category = 'Toys'\"")
    p.add_argument("--sort", metavar="COL", help="sort by this column (several: a,b)")
    p.add_argument("--order", metavar="asc|desc", help="sort direction (default asc; one per column: asc,desc)")
    paging(p, 50, 1000)

    p = verb("upload", "upload a file (CSV, TSV, JSON, JSON Lines, text)")
    p.add_argument("file", metavar="FILE", help="the file to upload")
    p.add_argument("--wait", action="store_true",
                   help="wait until processing ends, showing progress on stderr, and print the processed data source")

    p = verb("delete", "delete a data source, its rows and its original")
    p.add_argument("id", metavar="ID", help="the datasourceId")

    p = verb("download", "create a download link for a data source's original file")
    p.add_argument("id", metavar="ID", help="the datasourceId")
    p.add_argument("--expires", type=int, default=3600, metavar="SECONDS", help="the link's lifetime (default 3600, max 86400)")
    p.add_argument("--out", metavar="FILE", help="also fetch the file and write it to FILE")

    p = verb("call", "call any method with raw JSON params")
    p.add_argument("method", metavar="METHOD", help="a method name, e.g. datasources/list")
    p.add_argument("params", nargs="?", metavar="JSON", help="the params object (default {})")
    return parser


def _fail(message: str, code: str = "CLIENT_ERROR", details: Optional[Dict[str, Any]] = None) -> int:
    json.dump({"error": message, "code": code, "details": details or {}}, sys.stderr, ensure_ascii=False)
    sys.stderr.write("\n")
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    fmt = getattr(args, "format", None) or ("table" if sys.stdout.isatty() else "json")
    command = getattr(args, "agent", None)
    progress = _Progress()
    try:
        params = json.loads(args.params) if args.verb == "call" and args.params else None
    except ValueError as error:
        return _fail(f"params is not valid JSON: {error}", "INVALID_PARAMETERS", {"parameter": "params"})
    try:
        with Client(shlex.split(command) if command else None, store=getattr(args, "store", None)) as client:
            result: Any
            if args.verb == "list":
                result = client.list(status=args.status, page=args.page, limit=args.limit)
            elif args.verb == "get":
                result = client.get(args.id)
            elif args.verb == "data":
                result = client.data(args.id, filter=args.filter, sort=args.sort, order=args.order,
                                     page=args.page, limit=args.limit)
            elif args.verb == "upload":
                try:
                    result = client.upload(args.file, wait=args.wait, progress=progress if args.wait else None)
                finally:
                    progress.finish()
            elif args.verb == "delete":
                result = client.delete(args.id)
            elif args.verb == "download":
                result = client.download(args.id, expires_in=args.expires)
                if args.out:
                    with urllib.request.urlopen(result["downloadUrl"]) as response, open(args.out, "wb") as out:
                        out.write(response.read())
            else:
                result = client.call(args.method, params)
    except DatasourceAgentError as error:
        return _fail(error.message, error.code, error.details)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    sys.stdout.write(render(result, fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
