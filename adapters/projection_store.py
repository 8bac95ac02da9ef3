"""The projection store: current record of every job, in process memory.

It is rebuilt from the events topic at start-up, so it holds nothing Kafka does not.

Most of a long-running store is jobs that are over (kept for the retention period), so records
of jobs in a final status are kept compactly: a slotted :class:`_FinalRecord`, repeated strings
shared, times as epoch milliseconds, an environment id named after the job stored as its
prefix. That is about a quarter of a ``JobRecord``'s two pydantic instances (each with a
``__dict__`` and a fields-set). Records of jobs still moving change with every event and are
few (at most the jobs in flight), so they stay ``JobRecord`` instances and folding their events
costs no encoding.

:meth:`MemoryProjectionStore.record` always gives back a record equal to the one put: a record
the compact form cannot hold exactly (a time finer than milliseconds, a subclass, extra
attributes) is kept as it is, and fields added to the schemas later are kept generically.

Retention: with ``retention`` set, a final job whose final event is older than that is gone
for every reader at once (``record``, ``get``, ``list``, ``paragraphs``); :meth:`purge` then
frees its memory, and such a record is not even stored when a replay folds it.
"""

import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import is_
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from schemas.jobs import JobRecord, JobView, TimelineEntry
from schemas.notes import ParagraphResult
from schemas.status import JobStatus
from statemachine import FINAL_STATUSES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

# Fields the compact form stores in slots of its own; any other field of JobView or JobRecord
# (added to the schemas later) is kept in ``extra``, so it round-trips without this module
# knowing it.
_VIEW_SLOTS = frozenset(
    {
        "id",
        "model_id",
        "environment_id",
        "message",
        "status",
        "creation_date",
        "created_by",
        "input_folder_id",
        "output_folder_id",
        "configuration_id",
        "maximum_execution_time_in_seconds",
    }
)
_RECORD_SLOTS = frozenset({"view", "sequence", "tenant", "paragraphs", "timeline", "epoch"})
_VIEW_EXTRA = tuple(name for name in JobView.model_fields if name not in _VIEW_SLOTS)
_RECORD_EXTRA = tuple(name for name in JobRecord.model_fields if name not in _RECORD_SLOTS)
_REQUIRED = object()


def _default(model: type[JobView] | type[JobRecord], name: str) -> object:
    field = model.model_fields[name]
    return _REQUIRED if field.is_required() else field.get_default(call_default_factory=True)


# ``extra`` is None while every extra field has its default: a field nobody sets costs nothing.
_EXTRA_DEFAULTS = tuple(
    [_default(JobView, name) for name in _VIEW_EXTRA]
    + [_default(JobRecord, name) for name in _RECORD_EXTRA]
)


def _shared(text: str) -> str:
    """One copy per distinct string: tenants, models, folders, configurations, users and
    messages repeat across jobs. Interned strings are freed once nothing uses them, so purged
    jobs leave nothing behind."""
    return sys.intern(text) if type(text) is str else text


_Model = TypeVar("_Model", bound=BaseModel)


def _fields_if_plain(model: type[BaseModel]) -> int:
    """How many fields ``model`` has, or -1 when it has hooks ``construct_trusted`` would skip."""
    if model.__pydantic_post_init__ is not None or model.model_config.get("extra") == "allow":
        return -1
    return len(model.model_fields)


# Per model: its field count, or -1 (see above). Cached because ``model_fields`` is a property
# that costs as much as the rest of ``construct_trusted`` (two calls per folded event).
_PLAIN: dict[type[BaseModel], int] = {}


# BaseModel's own slots, set through their descriptors: a third cheaper than
# ``object.__setattr__`` by name, and ``construct_trusted`` runs twice per folded event.
_new_instance = object.__new__
_set_attribute = object.__setattr__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct_trusted(model: type[_Model], values: dict[str, Any]) -> _Model:
    """``model.model_construct(**values)`` for values that are already valid and name every
    field, in a fifth of its time (it is on every GET of a final job and every folded event).
    Falls back to ``model_construct`` for a model with hooks it would skip."""
    fields = _PLAIN.get(model)
    if fields is None:
        fields = _PLAIN[model] = _fields_if_plain(model)
    if len(values) != fields:
        # A hook to run, or fields left to their defaults (one added to the schema later).
        return model.model_construct(**values)
    instance: _Model = _new_instance(model)
    _set_attribute(instance, "__dict__", values)
    _set_fields_set(instance, set(values))
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


_build = construct_trusted


_SHARED_INTS: dict[int, int] = {}
_SHARED_INTS_MAX = 4096


def _shared_int(value: int) -> int:
    """Time limits and sequences repeat too; a bounded table, as ints cannot be interned."""
    if len(_SHARED_INTS) < _SHARED_INTS_MAX:
        return _SHARED_INTS.setdefault(value, value)
    return _SHARED_INTS.get(value, value)


@dataclass(frozen=True, slots=True)
class _PrefixOfJobId:
    """An environment id that is ``prefix + job id`` (as environments are named): the job id
    is already stored, so only the shared prefix is."""

    prefix: str


_PREFIXES: dict[str, _PrefixOfJobId] = {}


def _environment(environment_id: str | None, job_id: str) -> "str | _PrefixOfJobId | None":
    if environment_id is None or type(environment_id) is not str:
        return environment_id
    if environment_id.endswith(job_id) and len(environment_id) > len(job_id):
        prefix = environment_id[: -len(job_id)]
        found = _PREFIXES.get(prefix)
        if found is None and len(_PREFIXES) < _SHARED_INTS_MAX:
            found = _PREFIXES.setdefault(prefix, _PrefixOfJobId(_shared(prefix)))
        return found if found is not None else _PrefixOfJobId(_shared(prefix))
    return _shared(environment_id)


def _milliseconds(moment: datetime) -> int | None:
    """Epoch milliseconds when they give ``moment`` back exactly (UTC, whole milliseconds)."""
    if type(moment) is not datetime or moment.tzinfo is not UTC or moment.microsecond % 1000:
        return None
    # Exact: a whole number of milliseconds, far inside a double's 53 bits.
    return round(moment.timestamp() * 1000)


def _moment(milliseconds: int) -> datetime:
    return _EPOCH + milliseconds * _MILLISECOND


# Times and the timeline are packed into one bytes object: creation and end (epoch ms), then
# per timeline entry its status, whether it was a move, its message's code and its time as
# milliseconds after creation. Seven entries take 72 bytes instead of ~2 KB of models.
_HEAD = struct.Struct("<qq")
_ENTRY = struct.Struct("<BBHi")
_NO_END = -(2**63)
_STATUSES = tuple(JobStatus)
_STATUS_CODES = {status: code for code, status in enumerate(_STATUSES)}
# Messages repeat across jobs ("Validating inputs."); each distinct one gets a code, up to a
# bound, and the rest are kept with the record.
_TEXTS: list[str] = []
_TEXT_CODES: dict[str, int] = {}
_OWN_TEXT = 0xFFFF


def _text_code(text: str) -> int:
    code = _TEXT_CODES.get(text)
    if code is None:
        if len(_TEXTS) >= _OWN_TEXT:
            return _OWN_TEXT
        code = _TEXT_CODES.setdefault(text, len(_TEXTS))
        if code == len(_TEXTS):
            _TEXTS.append(_shared(text))
    return code


_PACKERS: dict[int, struct.Struct] = {}
# With extra fields allowed, an entry could carry fields the packed form would lose.
_ENTRY_EXTRA = TimelineEntry.model_config.get("extra") == "allow"


def _packer(entries: int) -> struct.Struct:
    packer = _PACKERS.get(entries)
    if packer is None:
        packer = _PACKERS[entries] = struct.Struct(
            _HEAD.format + _ENTRY.format.lstrip("<") * entries
        )
    return packer


def _pack(
    created: datetime, created_ms: int, ended_ms: int | None, timeline: tuple[TimelineEntry, ...]
) -> tuple[bytes, tuple[str, ...] | None] | None:
    """The packed times and timeline, with the messages that have no code; None when an entry
    would not come back exactly. ``created`` is ``created_ms`` as a UTC datetime."""
    values: list[int] = [created_ms, _NO_END if ended_ms is None else ended_ms]
    own: list[str] = []
    status_codes, text_codes = _STATUS_CODES, _TEXT_CODES
    for entry in timeline:
        if type(entry) is not TimelineEntry or (_ENTRY_EXTRA and entry.model_extra):
            return None
        at, status, moved, message = entry.at, entry.status, entry.moved, entry.message
        if (
            type(at) is not datetime
            or at.tzinfo is not UTC
            or at.microsecond % 1000
            or type(moved) is not bool
            or type(message) is not str
            or type(status) is not JobStatus
        ):
            return None
        # Exact (whole milliseconds on both sides) and half the cost of the float timestamp.
        after = (at - created) // _MILLISECOND
        if not -(2**31) <= after < 2**31:
            return None
        text = text_codes.get(message)
        if text is None:
            text = _text_code(message)
        if text == _OWN_TEXT:
            own.append(message)
        values += (status_codes[status], moved, text, after)
    return _packer(len(timeline)).pack(*values), (tuple(own) if own else None)


def _unpack_timeline(
    packed: bytes, created_ms: int, own: tuple[str, ...] | None
) -> tuple[TimelineEntry, ...]:
    own_texts = iter(own or ())
    return tuple(
        _build(
            TimelineEntry,
            {
                "status": _STATUSES[status],
                "at": _moment(created_ms + after),
                "message": next(own_texts) if text == _OWN_TEXT else _TEXTS[text],
                "moved": bool(moved),
            },
        )
        for status, moved, text, after in _ENTRY.iter_unpack(memoryview(packed)[_HEAD.size :])
    )


class _Shape(NamedTuple):
    """What many final jobs have in common: one shared tuple per distinct combination (a
    schedule runs the same model on the same folders for the same tenant, again and again)."""

    tenant: str
    created_by: str
    model_id: str
    input_folder_id: str
    output_folder_id: str
    max_seconds: int
    status: JobStatus


# Keyed by plain tuples too: a tuple equal to a _Shape finds it.
_SHAPES: dict[tuple[Any, ...], _Shape] = {}
_SHAPES_MAX = 65_536


def _shape(shape: _Shape) -> _Shape:
    found = _SHAPES.get(shape)
    if found is None and len(_SHAPES) < _SHAPES_MAX:
        found = _SHAPES.setdefault(shape, shape)
    return found if found is not None else shape


class _Rest(NamedTuple):
    """The parts most final jobs lack: paragraph results, messages without a code, fields this
    module does not know. None instead of this when all are empty."""

    paragraphs: tuple[ParagraphResult, ...]
    own_texts: tuple[str, ...] | None
    extra: tuple[Any, ...] | None


_NO_REST = _Rest((), None, None)


class _FinalRecord:
    """A final job's record; :meth:`record` rebuilds an equal ``JobRecord`` (no validation).

    The job id is the store's key and is passed in on reads rather than kept twice.
    """

    __slots__ = (
        "configuration_id",
        "environment",
        "epoch",
        "message",
        "packed",
        "rest",
        "sequence",
        "shape",
    )

    shape: _Shape
    configuration_id: str
    environment: "str | _PrefixOfJobId | None"
    message: str
    sequence: int
    epoch: int
    packed: bytes
    rest: _Rest | None

    @classmethod
    def of(cls, record: JobRecord, ended_ms: int | None) -> "_FinalRecord | None":
        """The compact form, or None when it would not give ``record`` back exactly."""
        view = record.view
        if type(record) is not JobRecord or type(view) is not JobView:
            return None
        if record.model_extra or view.model_extra or type(view.id) is not str:
            return None
        created_ms = _milliseconds(view.creation_date)
        if created_ms is None or type(view.status) is not JobStatus:
            return None
        packed = _pack(view.creation_date, created_ms, ended_ms, record.timeline)
        if packed is None:
            return None
        compact = cls()
        compact.packed, own_texts = packed
        status, tenant = view.status, record.tenant
        created_by, model_id = view.created_by, view.model_id
        input_folder_id, output_folder_id = view.input_folder_id, view.output_folder_id
        max_seconds = view.maximum_execution_time_in_seconds
        # Looked up by the job's own values first: a shape seen before holds shared copies
        # already, so the common case makes no copies (a plain tuple finds a _Shape key).
        shape = _SHAPES.get(
            (tenant, created_by, model_id, input_folder_id, output_folder_id, max_seconds, status)
        )
        if shape is None:
            shape = _shape(
                _Shape(
                    _shared(tenant),
                    _shared(created_by),
                    _shared(model_id),
                    _shared(input_folder_id),
                    _shared(output_folder_id),
                    _shared_int(max_seconds),
                    status,
                )
            )
        compact.shape = shape
        compact.configuration_id = _shared(view.configuration_id)
        compact.environment = _environment(view.environment_id, view.id)
        compact.message = _shared(view.message)
        compact.sequence = _shared_int(record.sequence)
        compact.epoch = _shared_int(record.epoch)
        extra = (
            *[getattr(view, name) for name in _VIEW_EXTRA],
            *[getattr(record, name) for name in _RECORD_EXTRA],
        )
        if not _all_defaults(extra):
            compact.rest = _Rest(record.paragraphs, own_texts, extra)
        elif own_texts is None and record.paragraphs == () and type(record.paragraphs) is tuple:
            compact.rest = None
        else:
            compact.rest = _Rest(record.paragraphs, own_texts, None)
        return compact

    @property
    def tenant(self) -> str:
        return self.shape.tenant

    @property
    def paragraphs(self) -> tuple[ParagraphResult, ...]:
        return () if self.rest is None else self.rest.paragraphs

    @property
    def ended_ms(self) -> int | None:
        ended: int = _HEAD.unpack_from(self.packed)[1]
        return None if ended == _NO_END else ended

    def _extra(self) -> tuple[Any, ...]:
        return _EXTRA_DEFAULTS if self.rest is None or self.rest.extra is None else self.rest.extra

    def view(self, job_id: str) -> JobView:
        shape = self.shape
        environment = self.environment
        return _build(
            JobView,
            {
                "id": job_id,
                "model_id": shape.model_id,
                "environment_id": (
                    environment.prefix + job_id
                    if isinstance(environment, _PrefixOfJobId)
                    else environment
                ),
                "message": self.message,
                "status": shape.status,
                "creation_date": _moment(_HEAD.unpack_from(self.packed)[0]),
                "created_by": shape.created_by,
                "input_folder_id": shape.input_folder_id,
                "output_folder_id": shape.output_folder_id,
                "configuration_id": self.configuration_id,
                "maximum_execution_time_in_seconds": shape.max_seconds,
                **_named(_VIEW_EXTRA, self._extra()[: len(_VIEW_EXTRA)]),
            },
        )

    def record(self, job_id: str) -> JobRecord:
        created_ms = _HEAD.unpack_from(self.packed)[0]
        own_texts = None if self.rest is None else self.rest.own_texts
        return _build(
            JobRecord,
            {
                "view": self.view(job_id),
                "sequence": self.sequence,
                "epoch": self.epoch,
                "tenant": self.shape.tenant,
                "paragraphs": self.paragraphs,
                "timeline": _unpack_timeline(self.packed, created_ms, own_texts),
                **_named(_RECORD_EXTRA, self._extra()[len(_VIEW_EXTRA) :]),
            },
        )


class _KeptRecord:
    """A final job's record that the compact form cannot hold exactly, with its end time."""

    __slots__ = ("ended_ms", "kept", "tenant")

    def __init__(self, record: JobRecord, ended_ms: int | None) -> None:
        self.kept = record
        self.tenant = record.tenant
        self.ended_ms = ended_ms


def _all_defaults(values: tuple[Any, ...]) -> bool:
    if all(map(is_, values, _EXTRA_DEFAULTS)):
        return True  # the default objects themselves (None mostly), checked without a loop
    return all(
        default is not _REQUIRED and type(value) is type(default) and value == default
        for value, default in zip(values, _EXTRA_DEFAULTS, strict=True)
    )


def _named(names: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    return {
        name: value for name, value in zip(names, values, strict=True) if value is not _REQUIRED
    }


_Stored = JobRecord | _FinalRecord | _KeptRecord


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryProjectionStore:
    """The projection store in process memory.

    ``retention``: how long a final job stays after its final event (None: for ever).
    ``clock``: epoch milliseconds now (tests move it).
    """

    def __init__(
        self,
        retention: timedelta | None = None,
        clock: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self._records: dict[str, _Stored] = {}
        self._retention_ms = None if retention is None else retention // _MILLISECOND
        self._clock = clock

    def record(self, job_id: str) -> JobRecord | None:
        # A job still moving is the common case (every folded event looks its job up first),
        # and its record needs no retention check.
        found = self._records.get(job_id)
        if found is None or type(found) is JobRecord:
            return found
        found = self._live(job_id)
        if found is None or type(found) is JobRecord:
            return found
        if isinstance(found, _FinalRecord):
            return found.record(job_id)
        assert isinstance(found, _KeptRecord)
        return found.kept

    def put(self, record: JobRecord, at: datetime | None = None) -> None:
        """Replace the job's record; ``at`` is when its last event happened, the start of a
        final job's retention (without it, a final job is kept for ever)."""
        job_id = record.view.id
        if record.view.status not in FINAL_STATUSES:
            self._records[job_id] = record
            return
        ended_ms = None if at is None else (at.astimezone(UTC) - _EPOCH) // _MILLISECOND
        previous = self._records.get(job_id)
        if not isinstance(previous, JobRecord | None) and previous.ended_ms is not None:
            # Already final: a late event only fills in its timeline; the job ended back then.
            ended_ms = previous.ended_ms
        if self._expired(ended_ms, self._horizon()):
            # A replay of a job past retention: the job does not come back.
            self._records.pop(job_id, None)
            return
        compact = _FinalRecord.of(record, ended_ms)
        self._records[job_id] = compact if compact is not None else _KeptRecord(record, ended_ms)

    def get(self, tenant: str, job_id: str) -> JobView | None:
        found = self._live(job_id)
        if found is None or found.tenant != tenant:
            return None
        return _view(job_id, found)

    def paragraphs(self, tenant: str, job_id: str) -> tuple[ParagraphResult, ...] | None:
        found = self._live(job_id)
        if found is None or found.tenant != tenant:
            return None
        return found.kept.paragraphs if isinstance(found, _KeptRecord) else found.paragraphs

    def list(self, tenant: str) -> Sequence[JobView]:
        horizon = self._horizon()
        views = [
            _view(job_id, found)
            for job_id, found in self._records.items()
            if found.tenant == tenant and not self._expired(_ended(found), horizon)
        ]
        views.sort(key=lambda view: (view.creation_date, view.id), reverse=True)
        return views

    def purge(self) -> int:
        """Forget the final jobs past retention; returns how many. Readers stop seeing a job the
        moment it passes retention; this frees its memory."""
        horizon = self._horizon()
        if horizon is None:
            return 0
        gone = [
            job_id
            for job_id, found in self._records.items()
            if self._expired(_ended(found), horizon)
        ]
        for job_id in gone:
            del self._records[job_id]
        return len(gone)

    def __len__(self) -> int:
        return len(self._records)

    def _horizon(self) -> int | None:
        """Final jobs that ended before this many epoch milliseconds are past retention."""
        return None if self._retention_ms is None else self._clock() - self._retention_ms

    @staticmethod
    def _expired(ended_ms: int | None, horizon: int | None) -> bool:
        return horizon is not None and ended_ms is not None and ended_ms < horizon

    def _live(self, job_id: str) -> _Stored | None:
        found = self._records.get(job_id)
        if found is None or type(found) is JobRecord:
            return found
        assert isinstance(found, _FinalRecord | _KeptRecord)
        return None if self._expired(found.ended_ms, self._horizon()) else found


def _ended(found: _Stored) -> int | None:
    """When a final job's final event happened; None for a job still moving."""
    return None if isinstance(found, JobRecord) else found.ended_ms


def _view(job_id: str, found: _Stored) -> JobView:
    if isinstance(found, _FinalRecord):
        return found.view(job_id)
    if isinstance(found, _KeptRecord):
        return found.kept.view
    return found.view
