"""Types the C extension's results have, for type checkers and for users."""
from __future__ import annotations

from typing import TypedDict


class ReaderStats(TypedDict):
    """``Reader.stats()``: what this reader saw since it registered."""

    taken: int              #: samples taken
    dropped: int            #: samples lost to the writer's overflow policy, or corrupt
    skipped: int            #: samples a latest reader passed over for a newer one (0 otherwise)
    lag: int                #: committed samples not yet taken
    last_sn: int | None     #: sn of the last sample taken (None before the first)
