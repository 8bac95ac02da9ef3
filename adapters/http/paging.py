"""Paging as both Job Manager v3 clients expect it, in one body.

Spring-style pages (``content``, ``totalPages``, ``number``, …) as the REST samples show, and the
MindSphere SDK's list shape (``jobs``/``schedules`` plus ``page``). Pages are 0-based.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.http.errors import ApiError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100
# As in MindSphere: only the first 10,000 items of a listing can be reached by paging.
MAX_REACHABLE_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class PageRequest:
    number: int
    size: int

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> "PageRequest":
        number = _whole_number(query, "pageNumber", 0, minimum=0, maximum=MAX_REACHABLE_ITEMS)
        size = _whole_number(query, "pageSize", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
        if number * size >= MAX_REACHABLE_ITEMS and number > 0:
            raise ApiError(
                400,
                f"only the first {MAX_REACHABLE_ITEMS} items can be paged through; "
                "narrow the listing with a filter",
            )
        return cls(number, size)

    def body(
        self, items: Sequence[Mapping[str, Any]], total: int, list_name: str
    ) -> dict[str, Any]:
        """The page's answer; ``items`` are all matching items, newest first."""
        total = min(total, MAX_REACHABLE_ITEMS)
        start = self.number * self.size
        content = list(items[start : start + self.size])
        total_pages = -(-total // self.size)
        return {
            "content": content,
            list_name: content,
            "page": {
                "number": self.number,
                "size": self.size,
                "totalPages": total_pages,
                "totalElements": total,
            },
            "totalPages": total_pages,
            "totalElements": total,
            "last": self.number >= total_pages - 1,
            "first": self.number == 0,
            "size": self.size,
            "number": self.number,
            "numberOfElements": len(content),
            "sort": {"sorted": True, "unsorted": False, "empty": False},
        }


def _whole_number(
    query: Mapping[str, str], name: str, default: int, minimum: int, maximum: int
) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    # isdigit() alone accepts "²" and other digits int() refuses; the length keeps int() cheap.
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
    if not minimum <= number <= maximum:
        raise ApiError(400, f"{name} must be a whole number between {minimum} and {maximum}")
    return number
