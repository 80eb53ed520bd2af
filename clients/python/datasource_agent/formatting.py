"""Result rendering for the CLIs: `json` (indented), `table` (for people) and `csv` (RFC 4180).
clients/shell/ds renders the same way, so both CLIs print the same table and CSV.

- A result holding rows (`dataSources` of list, `data` of data, `rows` of query) → one line
  per row; the column names are the result's `columns[].name`, else the rows' keys in order.
- A data source with `columns` (get, upload --wait) → table: its fields as key/value lines,
  a blank line, then one line per column; csv: one line per column.
- Any other object → table: key/value lines; csv: a header and one line.
Nested objects are flattened to dotted keys (`processingStats.cleanedRows`) in key/value
output; arrays and objects inside a cell are compact JSON; null is an empty cell. Table cells
in row tables are cut at 40 characters; key/value values are never cut."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

FORMATS = ("json", "table", "csv")
ROW_KEYS = ("dataSources", "data", "rows")
CELL_WIDTH = 40


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _rows(result: Any) -> Optional[Tuple[List[str], List[Dict[str, Any]]]]:
    if isinstance(result, list) and all(isinstance(item, dict) for item in result):
        return _names(None, result), result
    if not isinstance(result, dict):
        return None
    for key in ROW_KEYS:
        rows = result.get(key)
        if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
            return _names(result.get("columns"), rows), rows
    return None


def _names(columns: Any, rows: Sequence[Dict[str, Any]]) -> List[str]:
    if isinstance(columns, list) and columns and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in columns):
        return [c["name"] for c in columns]
    names: List[str] = []
    for row in rows:
        for key in row:
            if key not in names:
                names.append(key)
    return names


def _is_datasource(result: Any) -> bool:
    return isinstance(result, dict) and "datasourceId" in result and isinstance(result.get("columns"), list)


def _flatten(value: Dict[str, Any], prefix: str = "") -> List[Tuple[str, Any]]:
    pairs: List[Tuple[str, Any]] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            pairs.extend(_flatten(item, prefix + key + "."))
        else:
            pairs.append((prefix + key, item))
    return pairs


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")


def _cut(text: str) -> str:
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _grid(names: List[str], rows: Sequence[Dict[str, Any]]) -> List[str]:
    cells = [[_cut(_one_line(cell(row.get(name)))) for name in names] for row in rows]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(names)]
    lines = ["  ".join(name.ljust(widths[i]) for i, name in enumerate(names)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(text.ljust(widths[i]) for i, text in enumerate(line)).rstrip() for line in cells]
    if not rows:
        lines.append("(none)")
    return lines


def _key_values(pairs: List[Tuple[str, Any]]) -> List[str]:
    width = max((len(key) for key, _ in pairs), default=0)
    return [(key.ljust(width) + "  " + _one_line(cell(value))).rstrip() for key, value in pairs]


def _pagination(result: Any) -> List[str]:
    pagination = result.get("pagination") if isinstance(result, dict) else None
    if not isinstance(pagination, dict) or "total" not in pagination:
        return []
    return [f"page {cell(pagination.get('page'))} of {cell(pagination.get('totalPages'))}, {cell(pagination.get('total'))} in all"]


def table(result: Any) -> str:
    if _is_datasource(result):
        pairs = _flatten({key: value for key, value in result.items() if key != "columns"})
        columns = result["columns"]
        lines = _key_values(pairs) + [""] + _grid(_names(None, columns), columns)
    elif _rows(result) is not None:
        names, rows = _rows(result)  # type: ignore[misc]
        lines = _grid(names, rows) + _pagination(result)
    elif isinstance(result, dict):
        lines = _key_values(_flatten(result))
    else:
        lines = [_one_line(cell(result))]
    return "\n".join(lines) + "\n"


def csv_text(result: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if _is_datasource(result):
        columns = result["columns"]
        names = _names(None, columns)
        writer.writerow(names)
        writer.writerows([[cell(column.get(name)) for name in names] for column in columns])
    elif _rows(result) is not None:
        names, rows = _rows(result)  # type: ignore[misc]
        if names:
            writer.writerow(names)
        writer.writerows([[cell(row.get(name)) for name in names] for row in rows])
    elif isinstance(result, dict):
        pairs = _flatten(result)
        writer.writerow([key for key, _ in pairs])
        writer.writerow([cell(value) for _, value in pairs])
    else:
        writer.writerow([cell(result)])
    return out.getvalue()


def render(result: Any, fmt: str) -> str:
    if fmt == "table":
        return table(result)
    if fmt == "csv":
        return csv_text(result)
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
