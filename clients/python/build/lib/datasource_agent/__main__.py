"""`python -m datasource_agent VERB …`: the shell client's verbs. Results go to stdout as
JSON (exit 0); errors to stderr as JSON (exit 1)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from typing import Any, Dict, List, Optional

from .client import Client
from .errors import DatasourceAgentError


def _progress_printer():
    interactive = sys.stderr.isatty()

    def show(value: Dict[str, Any]) -> None:
        percent = value.get("percentage")
        message = value.get("message") or value.get("title") or ""
        if interactive:
            if value.get("kind") == "end":
                sys.stderr.write("\r[" + "#" * 30 + "] 100% " + message + "\n")
            else:
                filled = int((percent or 0) * 30 / 100)
                sys.stderr.write("\r[" + "#" * filled + "-" * (30 - filled) + f"] {percent or 0:3d}% {message}   ")
        else:
            sys.stderr.write(f"{value.get('kind')}: {'' if percent is None else str(percent) + '% '}{message}\n")
        sys.stderr.flush()

    return show


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasource_agent", description="datasource-agent client")
    parser.add_argument("--agent", help="agent command (default: $DATASOURCE_AGENT, then datasource-agent on PATH)")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("list")
    p.add_argument("--status")
    p.add_argument("--page", type=int)
    p.add_argument("--limit", type=int)
    sub.add_parser("get").add_argument("id")
    p = sub.add_parser("data")
    p.add_argument("id")
    p.add_argument("--filter")
    p.add_argument("--sort")
    p.add_argument("--order")
    p.add_argument("--page", type=int)
    p.add_argument("--limit", type=int)
    p = sub.add_parser("upload")
    p.add_argument("file")
    p.add_argument("--wait", action="store_true")
    sub.add_parser("delete").add_argument("id")
    p = sub.add_parser("download")
    p.add_argument("id")
    p.add_argument("--expires", type=int, default=3600)
    p.add_argument("--out")
    p = sub.add_parser("call")
    p.add_argument("method")
    p.add_argument("params", nargs="?")
    args = parser.parse_args(argv)

    command = args.agent or os.environ.get("DATASOURCE_AGENT")
    try:
        with Client(command.split() if command else None) as client:
            result: Any
            if args.verb == "list":
                result = client.list(**{k: v for k, v in {"status": args.status, "page": args.page, "limit": args.limit}.items() if v is not None})
            elif args.verb == "get":
                result = client.get(args.id)
            elif args.verb == "data":
                params = {"filter": args.filter, "sort": args.sort, "order": args.order, "page": args.page, "limit": args.limit}
                result = client.data(args.id, **{k: v for k, v in params.items() if v is not None})
            elif args.verb == "upload":
                result = client.upload(args.file, wait=args.wait, progress=_progress_printer() if args.wait else None)
            elif args.verb == "delete":
                result = client.delete(args.id)
            elif args.verb == "download":
                result = client.download(args.id, expires_in=args.expires)
                if args.out:
                    with urllib.request.urlopen(result["downloadUrl"]) as response, open(args.out, "wb") as out:
                        out.write(response.read())
            else:
                result = client.call(args.method, json.loads(args.params) if args.params else None)
    except DatasourceAgentError as error:
        json.dump({"error": error.message, "code": error.code, "details": error.details}, sys.stderr)
        sys.stderr.write("\n")
        return 1
    except (OSError, ValueError) as error:
        json.dump({"error": str(error), "code": "CLIENT_ERROR", "details": {}}, sys.stderr)
        sys.stderr.write("\n")
        return 1
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
