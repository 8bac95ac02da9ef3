"""Picks the execution engine a job's environment configuration names (``"engine"``), and
what every engine reads the same way from a configuration or an interpreter's output."""

import re
from collections.abc import Mapping
from pathlib import Path

from adapters.ports import EngineError, EngineSession, ExecutionEngine
from schemas.jobs import EnvironmentConfiguration


class EngineByConfiguration:
    """An :class:`ExecutionEngine` that delegates to the engine named by the configuration."""

    def __init__(self, engines: Mapping[str, ExecutionEngine]) -> None:
        self._engines = dict(engines)

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> EngineSession:
        engine = self._engines.get(configuration.engine)
        if engine is None:
            known = ", ".join(sorted(self._engines))
            raise EngineError(
                f"engine {configuration.engine!r} is not available (known engines: {known})"
            )
        return await engine.start(workspace, variables, configuration)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """Interpreters colour their tracebacks; job messages and results are plain text."""
    return _ANSI.sub("", text)


def stop_on_paragraph_error(configuration: EnvironmentConfiguration) -> bool:
    """``"onParagraphError"``: "continue" (default, as MindSphere) or "stop" (as Zeppelin)."""
    value = str((configuration.model_extra or {}).get("onParagraphError", "continue")).lower()
    if value not in ("continue", "stop"):
        raise EngineError(
            f"Invalid environment configuration[{configuration.id}: onParagraphError must be "
            f"'continue' or 'stop', not {value!r}]"
        )
    return value == "stop"
