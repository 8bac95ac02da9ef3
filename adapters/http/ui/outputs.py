"""A paragraph's output split the way Zeppelin's display system reads it.

Zeppelin switches an output's type with a ``%text``, ``%html``, ``%table`` or ``%angular``
marker at the start of a line; ``%table`` data is tab-separated with a header row. Paragraphs of
the ``%html``/``%angular`` interpreters are HTML as a whole. The browser shows HTML only inside a
sandboxed frame, so nothing here has to make HTML safe; it only says which part is which.
"""

import re
from typing import Literal, TypedDict

#: Rows of one ``%table`` shown at most; the rest are counted, not sent.
MAX_TABLE_ROWS = 1000

_MARKER = re.compile(r"^%(text|html|table|angular)(?:[ \t]|$)", re.MULTILINE)
_HTML_INTERPRETERS = frozenset({"html", "angular"})

OutputType = Literal["TEXT", "HTML", "TABLE"]


class OutputPart(TypedDict, total=False):
    type: OutputType
    data: str
    columns: list[str]
    rows: list[list[str]]
    omittedRows: int


def output_parts(interpreter: str, output: str) -> list[OutputPart]:
    """The parts of ``output`` in order; blank text parts are left out."""
    if interpreter in _HTML_INTERPRETERS:
        return [OutputPart(type="HTML", data=output)] if output.strip() else []
    parts: list[OutputPart] = []
    kind, start = "text", 0
    for marker in _MARKER.finditer(output):
        parts.extend(_part(kind, output[start : marker.start()]))
        kind, start = marker.group(1), marker.end()
    parts.extend(_part(kind, output[start:]))
    return parts


def _part(kind: str, data: str) -> list[OutputPart]:
    if kind == "table":
        return [_table(data)] if data.strip() else []
    if not data.strip():
        return []
    if kind in _HTML_INTERPRETERS:
        return [OutputPart(type="HTML", data=data)]
    return [OutputPart(type="TEXT", data=data)]


def _table(data: str) -> OutputPart:
    lines = [line for line in data.rstrip("\n").split("\n") if line]
    columns = lines[0].split("\t") if lines else []
    body = lines[1:]
    rows = [line.split("\t") for line in body[:MAX_TABLE_ROWS]]
    part = OutputPart(type="TABLE", columns=columns, rows=rows)
    if len(body) > MAX_TABLE_ROWS:
        part["omittedRows"] = len(body) - MAX_TABLE_ROWS
    return part
