"""Zeppelin notes as the worker sees them, and the outcome of running one.

``parse_note`` reads Zeppelin 0.9+ ``.zpln`` files and legacy (<=0.8) ``note.json`` files; both
are the same JSON shape. Only what is needed to run a note is kept: stale ``status``,
``results``/``result``, dates and UI settings stored in the file are ignored.
"""

import json
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic.alias_generators import to_camel

# Zeppelin's own default group is `spark` (zeppelin.interpreter.group.default); this job manager
# embeds a Python environment, so notes that do not name a default group run as Python.
DEFAULT_INTERPRETER_GROUP = "python"

#: Upper bound, in UTF-8 bytes, of ``ParagraphResult.output`` (marker included).
MAX_OUTPUT_BYTES = 64 * 1024
#: Upper bound, in UTF-8 bytes, of ``ParagraphResult.error``, ``error_name`` and ``error_value``.
MAX_ERROR_BYTES = 8 * 1024
#: Upper bound, in UTF-8 bytes, of ``ParagraphResult.traceback`` (its end is kept).
MAX_TRACEBACK_BYTES = 16 * 1024
TRUNCATED_MARKER = "…[truncated]\n"

# Zeppelin's interpreter prefix (ParagraphTextParser), e.g. `%python`, `%spark.pyspark`.
_PREFIX = re.compile(r"^(\s*)%([a-zA-Z0-9_\-]+(?:\.\w+)*)")


class InvalidNote(ValueError):
    """The bytes are not a Zeppelin note that can be run."""


class _ParsedText(NamedTuple):
    interpreter: str
    local_properties: tuple[tuple[str, str], ...]
    script: str


def _parse_local_properties(text: str, start: int) -> tuple[dict[str, str], int]:
    """Parse `(k=v, k2="v,2", flag)` starting at the `(`; return the properties and the end.

    Mirrors Zeppelin's ParagraphTextParser: quotes group, backslash escapes, a bare key maps to
    itself.
    """
    props: dict[str, str] = {}
    pos = start + 1
    key: str | None = None
    parse_key = True
    inside_quotes = False
    buf: list[str] = []
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch == "\\":
            if pos == len(text):
                raise ValueError("unfinished escape sequence in interpreter properties")
            ch = text[pos]
            pos += 1
            buf.append({"n": "\n", "t": "\t"}.get(ch, ch))
        elif ch == '"':
            inside_quotes = not inside_quotes
        elif inside_quotes:
            buf.append(ch)
        elif ch == ")":
            value = "".join(buf).strip()
            if parse_key:
                if value:
                    props[value] = value
            elif key is not None:
                props[key] = value
            return props, pos
        elif ch == "=":
            if not parse_key:
                raise ValueError("invalid interpreter properties: unexpected '='")
            key = "".join(buf).strip()
            buf.clear()
            parse_key = False
        elif ch == ",":
            value = "".join(buf).strip()
            if parse_key:
                if not value:
                    raise ValueError("invalid interpreter properties: empty key")
                props[value] = value
            else:
                if not key:
                    raise ValueError("invalid interpreter properties: empty key")
                props[key] = value
            key = None
            parse_key = True
            buf.clear()
        else:
            buf.append(ch)
    raise ValueError("interpreter properties are not closed with ')'")


@lru_cache(maxsize=1024)
def _parse_text(text: str) -> _ParsedText:
    """Split a paragraph's text into interpreter, local properties and script, as Zeppelin does."""
    match = _PREFIX.match(text)
    if match is None:
        return _ParsedText("", (), text.strip())
    pos = match.end()
    props: dict[str, str] = {}
    if pos < len(text) and text[pos] == "(":
        props, pos = _parse_local_properties(text, pos)
    return _ParsedText(match.group(2), tuple(props.items()), text[pos:].strip())


class Paragraph(BaseModel):
    """One paragraph of a note; ``index`` is its 0-based position in the note."""

    model_config = ConfigDict(frozen=True)

    index: int
    id: str
    title: str | None
    text: str
    enabled: bool

    @model_validator(mode="after")
    def _text_parses(self) -> "Paragraph":
        _parse_text(self.text)  # malformed `%name(...)` properties are rejected up front
        return self

    @property
    def interpreter(self) -> str:
        """The `%name` prefix without `%`, e.g. "python", "spark.pyspark"; "" when none."""
        return _parse_text(self.text).interpreter

    @property
    def local_properties(self) -> dict[str, str]:
        """The `(k=v, ...)` properties right after the prefix, e.g. `%sh(form=simple)`."""
        return dict(_parse_text(self.text).local_properties)

    @property
    def script(self) -> str:
        """The code to run: the text without prefix and properties, surrounding blanks trimmed."""
        return _parse_text(self.text).script

    @property
    def label(self) -> str:
        """How users name the paragraph: its title, else "paragraph N" (1-based)."""
        return self.title if self.title else f"paragraph {self.index + 1}"


class Note(BaseModel):
    """A runnable note: its paragraphs in execution order (disabled ones included)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    default_interpreter_group: str
    paragraphs: tuple[Paragraph, ...]


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _paragraph(index: int, raw: Any) -> Paragraph:
    where = f"paragraph {index + 1}"
    if not isinstance(raw, dict):
        raise InvalidNote(f"{where} is not a JSON object")
    text = raw.get("text")
    if text is None:
        text = ""  # new, never edited paragraphs have no text
    if not isinstance(text, str):
        raise InvalidNote(f"{where}: 'text' must be a string")
    paragraph_id = raw.get("id")
    if paragraph_id is None:
        paragraph_id = f"paragraph_{index + 1}"
    if not isinstance(paragraph_id, str):
        raise InvalidNote(f"{where}: 'id' must be a string")
    title = _optional_str(raw.get("title"))
    config = raw.get("config")
    # Paragraph.isEnabled(): missing/null means enabled; only an explicit false disables.
    enabled = not (isinstance(config, dict) and config.get("enabled") is False)
    try:
        _parse_text(text)
    except ValueError as exc:  # malformed `%name(...)` local properties
        label = f"{where} ({title!r})" if title else where
        raise InvalidNote(f"{label}: {exc}") from None
    return Paragraph(
        index=index,
        id=paragraph_id,
        title=title if title and title.strip() else None,
        text=text,
        enabled=enabled,
    )


def parse_note(raw: bytes | str) -> Note:
    """Parse a Zeppelin `.zpln` (0.9+) or legacy `note.json`; raise :class:`InvalidNote`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidNote(f"note is not UTF-8 text: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidNote(f"note is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidNote(f"note must be a JSON object, got {type(data).__name__}")
    if "paragraphs" not in data:
        raise InvalidNote("note has no 'paragraphs'")
    paragraphs = data["paragraphs"]
    if not isinstance(paragraphs, list):
        raise InvalidNote("note 'paragraphs' must be a list")

    group = data.get("defaultInterpreterGroup")
    if group is None or group == "":
        group = DEFAULT_INTERPRETER_GROUP
    if not isinstance(group, str):
        raise InvalidNote("note 'defaultInterpreterGroup' must be a string")

    return Note(
        id=_optional_str(data.get("id")) or "",
        name=_optional_str(data.get("name")) or "",
        default_interpreter_group=group,
        paragraphs=tuple(_paragraph(i, p) for i, p in enumerate(paragraphs)),
    )


# Dynamic forms (Zeppelin's display/Input.java): `${name}`, `${name=default}`,
# `${name(Label)=default}`, `${name=default,a|b(B)}` (select), `${checkbox( or ):name=a|b,a|b|c}`,
# `${password:name}`; `_${...}` is a hidden form, `$${...}` a note form.
_FORM = re.compile(r"([_])?[$][{]([^=}]*([=][^}]*)?)[}]")
_NOTE_FORM = re.compile(r"([_])?[$]{2}[{]([^=}]*([=][^}]*)?)[}]")
_FORM_TYPE = re.compile(r"([^:()]*)\s*([(][^()]*[)])?\s*:(.*)")
_FORM_NAME = re.compile(r"([^(]*)\s*[(]([^)]*)[)]")


def _expand_form(match: re.Match[str], params: Mapping[str, str], note_form: bool) -> str:
    """The value a form stands for: ``params[name]``, else its default, else ""."""
    start = match.start()
    if not note_form and start > 0 and match.string[start - 1] == "$":
        return match.group(0)  # the tail of a `$${...}` note form: not a paragraph form
    body = match.group(2)
    equals = body.find("=")
    name_part, value_part = (body[:equals], body[equals + 1 :]) if equals > 0 else (body, None)
    form_type, argument = None, None
    typed = _FORM_TYPE.search(name_part.strip())
    if typed is not None:
        form_type = typed.group(1).strip()
        argument = typed.group(2).strip()[1:-1] if typed.group(2) else None
        name_part = typed.group(3)
        if form_type not in ("checkbox", "password"):
            return match.group(0)  # Zeppelin rejects the paragraph; e.g. bash's ${HOME:-x}
    named = _FORM_NAME.search(name_part.strip())
    name = (named.group(1) if named else name_part).strip()
    if name in params:
        return params[name]
    if value_part is None:
        return ""
    options = value_part.find(",")
    default = value_part[:options] if options >= 0 else value_part
    if form_type == "checkbox":
        checked = [item.strip() for item in default.split("|") if item.strip()]
        return (argument if argument is not None else ",").join(checked)
    return default


def apply_simple_forms(script: str, params: Mapping[str, str]) -> str:
    """Replace dynamic forms in ``script`` by their values, as Zeppelin's SIMPLE form type does.

    Note forms (`$${...}`) first, then paragraph forms (`${...}`); a value is ``params[name]``
    when present, else the form's default (checkbox defaults joined by the form's delimiter),
    else "". Unlike Zeppelin, values are not expanded again and a form of an unknown type
    (e.g. bash's `${HOME:-x}`) is left as it is instead of failing the paragraph.
    """
    if "${" not in script:
        return script
    script = _NOTE_FORM.sub(lambda match: _expand_form(match, params, True), script)
    return _FORM.sub(lambda match: _expand_form(match, params, False), script)


class ParagraphStatus(StrEnum):
    FINISHED = "FINISHED"
    ERROR = "ERROR"
    ABORT = "ABORT"
    SKIPPED = "SKIPPED"


def _keep_tail(text: str, limit: int) -> str:
    """Keep the last bytes of `text` so that marker + tail fit in `limit` UTF-8 bytes.

    Idempotent (a bounded value is returned unchanged), so results survive round trips.
    """
    data = text.encode("utf-8", "replace")  # lone surrogates become "?"
    if len(data) <= limit:
        return data.decode("utf-8")
    keep = limit - len(TRUNCATED_MARKER.encode("utf-8"))
    return TRUNCATED_MARKER + data[-keep:].decode("utf-8", "ignore")


def _keep_head(text: str, limit: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    ellipsis = "…"
    return data[: limit - len(ellipsis.encode("utf-8"))].decode("utf-8", "ignore") + ellipsis


class ParagraphResult(BaseModel):
    """What running one enabled paragraph produced.

    ``output`` keeps the last :data:`MAX_OUTPUT_BYTES` (a cut is marked with
    :data:`TRUNCATED_MARKER` at the start); ``error`` is the short reason, e.g.
    "ZeroDivisionError: division by zero" or "ExitValue: 2". For a Python exception,
    ``error_name``/``error_value`` are its class name and message and ``traceback`` is the
    plain-text traceback (its last :data:`MAX_TRACEBACK_BYTES`); they are None otherwise.
    SKIPPED paragraphs (not run because an earlier one failed) have no times.
    """

    # camelCase on the wire (it travels inside JobProgressed events), snake_case in Python.
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )

    index: int
    id: str
    label: str
    interpreter: str
    status: ParagraphStatus
    output: str
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None

    @field_validator("output")
    @classmethod
    def _bound_output(cls, value: str) -> str:
        return _keep_tail(value, MAX_OUTPUT_BYTES)

    @field_validator("error", "error_name", "error_value")
    @classmethod
    def _bound_error(cls, value: str | None) -> str | None:
        return None if value is None else _keep_head(value, MAX_ERROR_BYTES)

    @field_validator("traceback")
    @classmethod
    def _bound_traceback(cls, value: str | None) -> str | None:
        return None if value is None else _keep_tail(value, MAX_TRACEBACK_BYTES)

    @property
    def failed(self) -> bool:
        return self.status in (ParagraphStatus.ERROR, ParagraphStatus.ABORT)


class NoteRun(BaseModel):
    """Results of the enabled paragraphs of one run, in note order."""

    model_config = ConfigDict(frozen=True)

    paragraphs: tuple[ParagraphResult, ...]

    @property
    def failed(self) -> tuple[ParagraphResult, ...]:
        return tuple(p for p in self.paragraphs if p.failed)

    @property
    def succeeded(self) -> bool:
        return not self.failed

    def failure_summary(self) -> str:
        """One sentence naming every failed paragraph, "" when nothing failed.

        E.g. ``Paragraph 'Load data' failed: ZeroDivisionError: division by zero;
        paragraph 3 failed: ExitValue: 2`` (titles quoted, untitled ones by number).
        """
        parts = []
        for result in self.failed:
            untitled = result.label == f"paragraph {result.index + 1}"
            who = result.label if untitled else f"paragraph '{result.label}'"
            reason = result.error or result.status.value
            parts.append(f"{who} failed: {reason}")
        summary = "; ".join(parts)
        return summary[:1].upper() + summary[1:]
