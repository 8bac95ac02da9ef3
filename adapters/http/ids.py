"""Random ids for requests, jobs and commands: version-4 UUIDs as 32 hex digits.

``uuid.uuid4().hex`` builds a ``UUID`` object (with its checks) only to print it, and the
gateway needs three per ``POST /jobs``; this draws the same random bits from the OS and formats
them directly, in half the time.
"""

import os

# Everything but the version and variant bits, and those bits as ``uuid.uuid4`` sets them
# (version 4, RFC 4122 variant), so every id is still a valid version-4 UUID.
_RANDOM_BITS = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_FIXED_BITS = (0x4000 << 64) | (0x8000 << 48)


def random_id() -> str:
    """A fresh version-4 UUID as 32 lowercase hex digits, as ``uuid.uuid4().hex`` gives."""
    return f"{(int.from_bytes(os.urandom(16)) & _RANDOM_BITS) | _FIXED_BITS:032x}"
