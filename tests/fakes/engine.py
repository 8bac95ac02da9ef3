"""A base for fake execution engines: subclasses implement the old one-call ``run``."""

from collections.abc import Mapping
from pathlib import Path

from adapters.ports import ParagraphListener
from schemas.jobs import EnvironmentConfiguration
from schemas.notes import Note, NoteRun


class OneCallEngine:
    """An ``ExecutionEngine`` whose sessions delegate to ``run(note, workspace, variables)``."""

    def __init__(self) -> None:
        self.closed = 0
        self.configurations: list[EnvironmentConfiguration] = []

    async def start(
        self,
        workspace: Path,
        variables: Mapping[str, str],
        configuration: EnvironmentConfiguration,
    ) -> "FakeSession":
        self.configurations.append(configuration)
        return FakeSession(self, workspace, dict(variables))

    async def run(self, note: Note, workspace: Path, variables: Mapping[str, str]) -> NoteRun:
        raise NotImplementedError


class FakeSession:
    """The session a fake engine starts: runs through the engine, reports each paragraph."""

    def __init__(self, engine: OneCallEngine, workspace: Path, variables: dict[str, str]) -> None:
        self.engine = engine
        self.workspace = workspace
        self.variables = variables

    async def run(self, note: Note, on_paragraph: ParagraphListener | None = None) -> NoteRun:
        result = await self.engine.run(note, self.workspace, self.variables)
        if on_paragraph is not None:
            for paragraph in result.paragraphs:
                await on_paragraph(paragraph)
        return result

    async def close(self) -> None:
        self.engine.closed += 1
