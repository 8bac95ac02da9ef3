"""The projection store: current record of every job, in process memory.

It is rebuilt from the events topic at start-up, so it holds nothing Kafka does not.
"""

from collections.abc import Sequence

from schemas.jobs import JobRecord, JobView
from schemas.notes import ParagraphResult


class MemoryProjectionStore:
    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}

    def record(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def put(self, record: JobRecord) -> None:
        self._records[record.view.id] = record

    def get(self, tenant: str, job_id: str) -> JobView | None:
        record = self._records.get(job_id)
        return record.view if record is not None and record.tenant == tenant else None

    def paragraphs(self, tenant: str, job_id: str) -> tuple[ParagraphResult, ...] | None:
        record = self._records.get(job_id)
        return record.paragraphs if record is not None and record.tenant == tenant else None

    def list(self, tenant: str) -> Sequence[JobView]:
        views = [r.view for r in self._records.values() if r.tenant == tenant]
        views.sort(key=lambda view: (view.creation_date, view.id), reverse=True)
        return views

    def __len__(self) -> int:
        return len(self._records)
