"""Shared validation for the JSON readers: decode-error translation, level checks, crossed-book policy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from quantnb.data._io import snippet
from quantnb.data._quality import QualityReport
from quantnb.errors import ConfigError, DataError

# Checked in C while decoding: a price must be finite and > 0, a size finite and >= 0.
# A line that fails these is re-read by the slow path, which tells NaN/Inf (fatal) from
# non-positive prices and negative sizes (counted and skipped).
_MAX = 1.7e308
Price = Annotated[float, msgspec.Meta(gt=0.0, lt=_MAX)]
Size = Annotated[float, msgspec.Meta(ge=0.0, lt=_MAX)]
Level = tuple[float, float]

CrossedPolicy = Literal["raise", "skip"]
CROSSED_POLICIES = ("raise", "skip")


def check_policy(on_crossed: str) -> None:
    """Refuse an unknown ``on_crossed`` value.

    Parameters
    ----------
    on_crossed : str
        The policy as given.

    Raises
    ------
    ConfigError
        If it is not one of :data:`CROSSED_POLICIES` (``"raise"``, ``"skip"``).
    """
    if on_crossed not in CROSSED_POLICIES:
        raise ConfigError(f"on_crossed={on_crossed!r}: expected one of {CROSSED_POLICIES}")


def decode_error(path: Path, line: int, raw: bytes, exc: Exception) -> DataError:
    """Translate a msgspec error on one line into a DataError naming file, line and fix.

    Parameters
    ----------
    path : Path
        The file.
    line : int
        1-based line number.
    raw : bytes
        The line that failed to decode (its start is quoted).
    exc : Exception
        msgspec's error.

    Returns
    -------
    DataError
        With ``path`` and ``line`` filled; the caller raises it.
    """
    if isinstance(exc, msgspec.ValidationError):
        what = f"unexpected message layout ({exc})"
        fix = "the file is not in the expected exchange format or is corrupt — check the source or re-download it"
    else:
        what = f"not valid JSON ({exc})"
        fix = "the line is truncated or corrupt — re-download the file"
    return DataError(f"{path} line {line}: {what}: {snippet(raw)}; {fix}", path=str(path), line=line)


def clean_levels(levels: Sequence[Level], side: str, path: Path, line: int, report: QualityReport) -> list[Level]:
    """Return the levels that are usable; raise on NaN/Inf, count and skip price <= 0 or size < 0.

    Parameters
    ----------
    levels : sequence of (price, size)
        Parsed levels, quote per base unit and base units.
    side : {"bid", "ask"}
        For messages.
    path : Path
        The file, for messages.
    line : int
        1-based line of the message.
    report : QualityReport
        Where skipped levels are counted.

    Returns
    -------
    list of (price, size)
        The levels with price > 0 and size >= 0.

    Raises
    ------
    DataError
        If a price or size is NaN or infinite: the book cannot be trusted after it.
    """
    out: list[Level] = []
    for i, (px, sz) in enumerate(levels):
        if not (math.isfinite(px) and math.isfinite(sz)):
            bad = "price" if not math.isfinite(px) else "size"
            raise DataError(
                f"{path} line {line}: {bad} {px if bad == 'price' else sz!r} in {side} level {i} "
                f"([{px!r}, {sz!r}]) is NaN or infinite; the file is corrupt — re-download it or remove the line",
                path=str(path), line=line,
            )
        if px <= 0.0:
            report.flag("non_positive_price", line, f"{side} level {i} has price {px!r} <= 0; level skipped")
        elif sz < 0.0:
            report.flag("negative_size", line, f"{side} level {i} at price {px!r} has size {sz!r} < 0; level skipped")
        else:
            out.append((px, sz))
    return out


def crossed_error(path: Path, line: int, bb: float, ba: float, ident: str) -> DataError:
    """Return the DataError for a book left crossed by a whole message.

    Parameters
    ----------
    path : Path
        The file.
    line : int
        1-based line of the message that crossed the book.
    bb, ba : float
        Best bid and ask after it, quote per base unit.
    ident : str
        The message's id for the message text (e.g. ``"u=123"``).

    Returns
    -------
    DataError
        With ``path`` and ``line`` filled, suggesting ``on_crossed="skip"``.
    """
    return DataError(
        f"{path} line {line}: the book is crossed after applying this message ({ident}: best bid {bb!r} > "
        f"best ask {ba!r}); an update is missing or corrupt — re-download the file, or run the ETL with "
        "on_crossed='skip' (quantnb run etl -p on_crossed skip) to count crossed states and leave them out "
        "of the features",
        path=str(path), line=line,
    )


def crossed_ok(path: Path, line: int, bb: float, ba: float, ident: str, on_crossed: str,
               report: QualityReport) -> bool:
    """Handle a locked (counted, usable) or crossed book (raise, or count and skip); return True if usable.

    Parameters
    ----------
    path : Path
        The file.
    line : int
        1-based line of the message.
    bb, ba : float
        Best bid and ask after it, quote per base unit; ``bb >= ba``.
    ident : str
        The message's id for messages (e.g. ``"u=123"``).
    on_crossed : {"raise", "skip"}
        The policy for a crossed book.
    report : QualityReport
        Where locked and crossed books are counted.

    Returns
    -------
    bool
        True if the book is usable (locked), False if the update must be skipped.

    Raises
    ------
    DataError
        If the book is crossed and ``on_crossed == "raise"``.
    """
    if bb == ba:
        report.flag("locked", line, f"book locked after {ident}: best bid == best ask == {bb!r}")
        return True
    if on_crossed == "raise":
        raise crossed_error(path, line, bb, ba, ident)
    report.flag("crossed", line, f"book crossed after {ident}: best bid {bb!r} > best ask {ba!r}; "
                "update left out of the features")
    return False
