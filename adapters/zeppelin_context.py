"""The ZeppelinContext ``z`` that a note's Python paragraphs see (shared notes, section 3).

Zeppelin's ``z`` talks to the Zeppelin server; this one is backed by the job's variables
(``jobId``, ``inputFolder``, ``outputFolder``, ``datasetName``): a form's value is the variable
of that name when there is one, else the form's default. ``z.show`` prints Zeppelin's display
system text (``%table`` TSV, ``%html``), ``z.put``/``z.get`` share objects between paragraphs,
and ``z.run*`` cannot run other paragraphs here.

Runs *inside* the job's kernel, so standard library only: the engine
(:mod:`adapters.engine_local`) sends this file's source to the kernel and calls :func:`install`.
"""

import base64
import builtins
import importlib
import io
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

#: Rows ``z.show`` prints at most (Zeppelin's ``zeppelin.python.maxResult``).
MAX_RESULT = 1000


class InterpreterContext:
    """What ``z.getInterpreterContext()`` answers about the running paragraph."""

    def __init__(self, info: Mapping[str, Any] | None = None) -> None:
        info = info or {}
        self.noteId: str = str(info.get("noteId") or "")
        self.noteName: str = str(info.get("noteName") or "")
        self.paragraphId: str = str(info.get("paragraphId") or "")
        title = info.get("paragraphTitle")
        self.paragraphTitle: str | None = None if title is None else str(title)
        self.paragraphText: str = str(info.get("paragraphText") or "")
        self.replName: str = str(info.get("replName") or "")
        properties = info.get("localProperties")
        self.localProperties: dict[str, str] = (
            {str(k): str(v) for k, v in properties.items()} if isinstance(properties, dict) else {}
        )

    def getNoteId(self) -> str:
        return self.noteId

    def getNoteName(self) -> str:
        return self.noteName

    def getParagraphId(self) -> str:
        return self.paragraphId

    def getParagraphTitle(self) -> str | None:
        return self.paragraphTitle

    def getParagraphText(self) -> str:
        return self.paragraphText

    def getReplName(self) -> str:
        return self.replName

    def getLocalProperties(self) -> dict[str, str]:
        return dict(self.localProperties)

    def __repr__(self) -> str:
        return (
            f"InterpreterContext(noteId={self.noteId!r}, noteName={self.noteName!r}, "
            f"paragraphId={self.paragraphId!r}, paragraphTitle={self.paragraphTitle!r})"
        )


def _option_values(options: Iterable[Any]) -> list[str]:
    """Option values of ``[(value, label), ...]`` or ``[value, ...]``."""
    return [str(o[0]) if isinstance(o, tuple | list) and o else str(o) for o in options]


class ZeppelinContext:
    """Zeppelin's ``z`` for batch jobs. Names follow Zeppelin's Python API (camelCase)."""

    def __init__(self, params: Mapping[str, str], max_result: int = MAX_RESULT) -> None:
        self._params = dict(params)
        self._objects: dict[str, Any] = {}
        self._context = InterpreterContext()
        self.max_result = max_result

    # -- shared objects ------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self._objects[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._objects.get(key)  # Zeppelin answers null for a missing key

    def __delitem__(self, key: str) -> None:
        self._objects.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def put(self, key: str, value: Any) -> None:
        self[key] = value

    def add(self, key: str, value: Any) -> None:
        self[key] = value

    def get(self, key: str) -> Any:
        return self[key]

    def remove(self, key: str) -> None:
        del self[key]

    def containsKey(self, key: str) -> bool:
        return key in self

    def getAsDataFrame(self, key: str) -> Any:
        """A ``%table`` TSV put under ``key``, read with pandas (which must be installed)."""
        pandas = importlib.import_module("pandas")  # optional: only when asked for
        return pandas.read_csv(io.StringIO(str(self.get(key))), sep="\t")

    # -- forms: the job's variables, else the default -------------------------------------

    def input(self, name: str, defaultValue: Any = "") -> Any:
        return self._params.get(name, defaultValue)

    def textbox(self, name: str, defaultValue: Any = "") -> Any:
        return self.input(name, defaultValue)

    def noteTextbox(self, name: str, defaultValue: Any = "") -> Any:
        return self.input(name, defaultValue)

    def password(self, name: str) -> str:
        return self._params.get(name, "")

    def notePassword(self, name: str) -> str:
        return self.password(name)

    def select(self, name: str, options: Iterable[Any] = (), defaultValue: Any = "") -> Any:
        return self._params.get(name, defaultValue)

    def noteSelect(self, name: str, options: Iterable[Any] = (), defaultValue: Any = "") -> Any:
        return self.select(name, options, defaultValue)

    def checkbox(
        self, name: str, options: Iterable[Any] = (), defaultChecked: Iterable[Any] | None = None
    ) -> list[Any]:
        """The checked values: the variable split at commas, else ``defaultChecked``."""
        if name in self._params:
            return [item.strip() for item in self._params[name].split(",") if item.strip()]
        if defaultChecked is None:
            return _option_values(options)  # Zeppelin checks every option by default
        return list(defaultChecked)

    def noteCheckbox(
        self, name: str, options: Iterable[Any] = (), defaultChecked: Iterable[Any] | None = None
    ) -> list[Any]:
        return self.checkbox(name, options, defaultChecked)

    # -- display ---------------------------------------------------------------------------

    def show(self, obj: Any, **kwargs: Any) -> None:
        """``%table`` for data frames (anything with ``to_csv`` and ``columns``), an image for
        matplotlib, else ``print(obj)``."""
        if getattr(obj, "__name__", None) == "matplotlib.pyplot" or hasattr(obj, "savefig"):
            self.show_matplotlib(obj, **kwargs)
        elif hasattr(obj, "to_csv") and hasattr(obj, "columns"):
            self.show_dataframe(obj, **kwargs)
        else:
            print(obj)

    def show_dataframe(self, df: Any, show_index: bool = False, **kwargs: Any) -> None:
        """Print ``df`` as ``%table`` TSV (header line, then rows), at most ``max_result`` rows."""
        try:
            rows: int | None = len(df)
        except TypeError:
            rows = None
        limited = rows is not None and rows > self.max_result and hasattr(df, "head")
        frame = df.head(self.max_result) if limited else df
        text = str(frame.to_csv(sep="\t", index=show_index)).replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"
        sys.stdout.write("%table " + text)
        if limited:
            print(f"%html <font color=red>Results are limited by {self.max_result}.</font>")

    def show_matplotlib(
        self, p: Any, fmt: str = "png", width: str = "auto", height: str = "auto", **kwargs: Any
    ) -> None:
        """Print a figure (or ``pyplot``'s current one) as ``%html`` with an inline image."""
        if fmt == "png":
            buffer = io.BytesIO()
            p.savefig(buffer, format="png")
            data = base64.b64encode(buffer.getvalue()).decode("ascii")
            image = f"<img src=data:image/png;base64,{data} style='width={width};height:{height}'>"
        elif fmt == "svg":
            text = io.StringIO()
            p.savefig(text, format="svg")
            image = text.getvalue()
        else:
            raise ValueError("fmt must be 'png' or 'svg'")
        print(f"%html <div style='width:{width};height:{height}'>{image}<div>")

    def configure_mpl(self, **kwargs: Any) -> None:
        """No-op: the kernel's inline backend is used."""

    # -- context ---------------------------------------------------------------------------

    def getInterpreterContext(self) -> InterpreterContext:
        return self._context

    def _set_paragraph(self, info: Mapping[str, Any] | None) -> None:
        self._context = InterpreterContext(info)

    def _pre_run_cell(self, info: Any = None) -> None:
        """IPython ``pre_run_cell`` hook: the engine names the paragraph in the request metadata."""
        metadata = getattr(info, "cell_meta", None)
        if not isinstance(metadata, dict):  # older IPython: read the request being handled
            try:
                metadata = getattr(builtins, "get_ipython")().kernel.get_parent()["metadata"]  # noqa: B009
            except Exception:  # noqa: BLE001 - no kernel, no request: keep the last context
                return
        if isinstance(metadata, dict) and isinstance(metadata.get("zeppelin"), dict):
            self._set_paragraph(metadata["zeppelin"])

    # -- not available in a batch job ------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("z.run is not available in a batch job")

    def runParagraph(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("z.runParagraph is not available in a batch job")

    def runNote(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("z.runNote is not available in a batch job")

    def runAll(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("z.runAll is not available in a batch job")

    # -- front-end features without a front end: no-ops -----------------------------------

    def angular(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def angularBind(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def angularUnbind(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def angularWatch(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def angularUnwatch(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def registerHook(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def unregisterHook(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def registerNoteHook(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def unregisterNoteHook(self, *args: Any, **kwargs: Any) -> None:
        """No-op."""

    def __repr__(self) -> str:
        return f"ZeppelinContext(params={sorted(self._params)})"


def install(shell: Any, variables: Mapping[str, str]) -> ZeppelinContext:
    """Give the kernel's user namespace ``z`` (also ``__zeppelin__``) and ``job_variables``.

    Also makes tracebacks plain text (no colours, no context lines) for the job's results.
    """
    z = ZeppelinContext(variables)
    shell.push({"z": z, "__zeppelin__": z, "job_variables": dict(variables)}, interactive=False)
    shell.events.register("pre_run_cell", z._pre_run_cell)
    # sys.exit(0) ends a paragraph normally; IPython's hint to use exit() is noise in a job.
    warnings.filterwarnings("ignore", message="To exit: use", category=UserWarning)
    try:
        shell.colors = "nocolor"
        shell.InteractiveTB.set_mode(mode="Plain")
    except Exception:  # noqa: BLE001 - cosmetic; the engine strips ANSI codes anyway
        pass
    return z
