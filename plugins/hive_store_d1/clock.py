"""Row clocks: a hybrid logical clock written as fixed-width TEXT.

A clock is ``"<ms:13>-<counter:06>-<device>"``, e.g. ``"1767225600123-000002-a1b2c3d4e5f60718"``:
milliseconds since the epoch, a counter for writes within one millisecond (or while the wall
clock is behind a clock already seen), and the device id. Fixed-width digits make text order the
order of (time, counter), and the device id at the end breaks ties, so ``max()`` over clocks
is *last writer wins, ties broken by device id* — in Python and in SQL (``excluded._hlc >
t._hlc``) alike. It is TEXT because D1 returns numbers as JavaScript doubles: a packed 64-bit
clock above 2^53 would come back changed.

Every local transaction that writes mirrored rows takes one new clock (:func:`tick`); a pull
moves the local clock past every clock it applies (:func:`receive`), so a later local write
always wins over what this device has seen.
"""

from __future__ import annotations

import re
import secrets
import time

_CLOCK = re.compile(r"^(\d{13})-(\d{6})-([A-Za-z0-9_.]{1,64})$")
COUNTER_MAX = 999_999

#: The clock of rows this device never saw written (existing rows in a first push): older
#: than any real write, so it never overwrites a row another device wrote.
BASE_MS = 0


def new_device_id() -> str:
    """A random device id (16 hex digits)."""
    return secrets.token_hex(8)


def now_ms() -> int:
    """The wall clock in milliseconds."""
    return time.time_ns() // 1_000_000


def format_clock(ms: int, counter: int, device: str) -> str:
    """The TEXT form of a clock."""
    return f"{ms:013d}-{counter:06d}-{device}"


def base_clock(device: str) -> str:
    """The clock given to rows whose write this device never recorded."""
    return format_clock(BASE_MS, 0, device)


def parse_clock(text: str) -> tuple[int, int, str]:
    """``(ms, counter, device)`` of a clock; ``ValueError`` if it is not one."""
    match = _CLOCK.match(text)
    if not match:
        raise ValueError(f"not a row clock: {text[:80]!r}")
    return int(match.group(1)), int(match.group(2)), match.group(3)


def tick(last_ms: int, last_counter: int, wall_ms: int) -> tuple[int, int]:
    """The next ``(ms, counter)`` after ``(last_ms, last_counter)`` at wall time ``wall_ms``."""
    if wall_ms > last_ms:
        return wall_ms, 0
    if last_counter >= COUNTER_MAX:
        return last_ms + 1, 0
    return last_ms, last_counter + 1


def receive(last_ms: int, last_counter: int, seen: str) -> tuple[int, int]:
    """The local clock state after seeing the clock ``seen`` (the larger of the two)."""
    try:
        ms, counter, _ = parse_clock(seen)
    except ValueError:
        return last_ms, last_counter
    return max((last_ms, last_counter), (ms, counter))
