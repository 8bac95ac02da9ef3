"""Child program of :class:`adapters.engine_local.LocalNoteEngine`: one Python kernel per run.

Run by file path (``python adapters/python_runner.py``), standard library only. Protocol, one
JSON object per line:

* request on stdin: ``{"code": str, "variables": {str: str}?}`` — ``variables``, when present,
  becomes the ``job_variables`` dict of the paragraphs' globals;
* response on the *original* stdout: ``{"ok": bool, "output": str, "error": str | null,
  "traceback": str | null}``.

All paragraphs share one globals dict (a real ``__main__`` module), so state persists between
them. Before anything runs, fd 1 is pointed at fd 2 and fd 0 at /dev/null, so ``os.system``,
C extensions or ``input()`` cannot corrupt or consume the protocol.
"""

import ast
import builtins
import io
import json
import linecache
import os
import sys
import traceback
import types
from typing import Any

MAX_OUTPUT_CHARS = 64 * 1024
TRUNCATED_MARKER = "…[truncated]\n"  # same marker as schemas.notes


class _Capture(io.TextIOBase):
    """Text sink that keeps only the last ``MAX_OUTPUT_CHARS`` characters written to it."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[str] = []
        self._size = 0
        self._truncated = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._chunks.append(text)
        self._size += len(text)
        if self._size > 2 * MAX_OUTPUT_CHARS:
            self._compact()
        return len(text)

    def _compact(self) -> None:
        joined = "".join(self._chunks)
        if len(joined) > MAX_OUTPUT_CHARS:
            joined = joined[-MAX_OUTPUT_CHARS:]
            self._truncated = True
        self._chunks = [joined]
        self._size = len(joined)

    def getvalue(self) -> str:
        self._compact()
        text = "".join(self._chunks)
        return TRUNCATED_MARKER + text if self._truncated else text


def _tail(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return TRUNCATED_MARKER + text[-MAX_OUTPUT_CHARS:]


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _run_code(code: str, namespace: dict[str, Any], filename: str) -> None:
    """Exec ``code``; like Zeppelin's %python, a trailing expression's value is printed."""
    # Register the source so tracebacks show the paragraph's lines.
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    tree = ast.parse(code, filename, "exec")
    last: ast.Interactive | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Interactive(body=[tree.body.pop()])
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        exec(compile(last, filename, "single"), namespace)


def _handle(request: dict[str, Any], namespace: dict[str, Any], counter: int) -> dict[str, Any]:
    variables = request.get("variables")
    if isinstance(variables, dict):
        namespace["job_variables"] = {str(k): str(v) for k, v in variables.items()}
    code = request.get("code")
    if not isinstance(code, str):
        return {
            "ok": False,
            "output": "",
            "error": "ProtocolError: 'code' must be a string",
            "traceback": None,
        }

    capture = _Capture()
    saved = sys.stdout, sys.stderr, sys.displayhook
    sys.stdout = sys.stderr = capture
    sys.displayhook = sys.__displayhook__  # prints to the (captured) sys.stdout
    ok, error, tb_text = True, None, None
    try:
        _run_code(code, namespace, f"<paragraph {counter}>")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            ok, error = False, _describe(exc)
    except BaseException as exc:  # noqa: BLE001 - report everything the paragraph raised
        ok, error = False, _describe(exc)
        # Drop the runner's own frames: start at the first frame of the paragraph.
        tb = exc.__traceback__
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<paragraph"):
            tb = tb.tb_next
        tb_text = "".join(traceback.format_exception(type(exc), exc, tb))
    finally:
        try:
            capture.flush()
        finally:
            sys.stdout, sys.stderr, sys.displayhook = saved
    return {
        "ok": ok,
        "output": capture.getvalue(),
        "error": error,
        "traceback": None if tb_text is None else _tail(tb_text),
    }


def main() -> None:
    # Keep private copies of the protocol pipes, then neutralise fds 0 and 1.
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    # Like an interactive interpreter: no runner directory on sys.path (it would shadow
    # modules), the current directory instead; a real __main__ module for pickle & co.
    sys.path[0] = ""
    sys.argv = [""]
    main_module = types.ModuleType("__main__")
    main_module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main_module
    namespace = main_module.__dict__

    counter = 0
    for line in protocol_in:
        if not line.strip():
            continue
        counter += 1
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise TypeError("request must be a JSON object")
        except (ValueError, TypeError) as exc:
            response: dict[str, Any] = {
                "ok": False,
                "output": "",
                "error": f"ProtocolError: {exc}",
                "traceback": None,
            }
        else:
            response = _handle(request, namespace, counter)
        protocol_out.write(json.dumps(response) + "\n")
        protocol_out.flush()


if __name__ == "__main__":
    main()
