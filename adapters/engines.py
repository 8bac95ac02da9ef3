"""Picks the execution engine a job's environment configuration names (``"engine"``)."""

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
