"""Shared validation for the JSON readers: decode-error translation, level checks, crossed-book policy."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec

from quantnb.data._io import snippet
from quantnb.data._quality import QualityReport
from quantnb.errors import ConfigError, DataError

T = TypeVar("T")

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
    """Refuse an unknown ``on_crossed`` value."""
    if on_crossed not in CROSSED_POLICIES:
        raise ConfigError(f"on_crossed={on_crossed!r}: expected one of {CROSSED_POLICIES}")


def decode_error(path: Path, line: int, raw: bytes, exc: Exception) -> DataError:
    """Translate a msgspec error on one line into a DataError naming file, line and fix."""
    if isinstance(exc, msgspec.ValidationError):
        what = f"unexpected message layout ({exc})"
        fix = "the file is not in the expected exchange format or is corrupt — check the source or re-download it"
    else:
        what = f"not valid JSON ({exc})"
        fix = "the line is truncated or corrupt — re-download the file"
    return DataError(f"{path} line {line}: {what}: {snippet(raw)}; {fix}", path=str(path), line=line)


def strict_decode(decode: Callable[[bytes], T], path: Path, line: int, raw: bytes) -> T:
    """Return ``decode(raw)``; a msgspec error becomes :func:`decode_error`'s DataError."""
    try:
        return decode(raw)
    except msgspec.DecodeError as exc:
        raise decode_error(path, line, raw, exc) from exc


def clean_levels(levels: Sequence[Level], side: str, path: Path, line: int, report: QualityReport) -> list[Level]:
    """Return the levels that are usable; raise on NaN/Inf, count and skip price <= 0 or size < 0."""
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
    """Return the DataError for a book left crossed by a whole message."""
    return DataError(
        f"{path} line {line}: the book is crossed after applying this message ({ident}: best bid {bb!r} > "
        f"best ask {ba!r}); an update is missing or corrupt — re-download the file, or run the ETL with "
        "on_crossed='skip' (quantnb run etl -p on_crossed skip) to count crossed states and leave them out "
        "of the features",
        path=str(path), line=line,
    )


def crossed_ok(path: Path, line: int, bb: float, ba: float, ident: str, on_crossed: str,
               report: QualityReport) -> bool:
    """Handle a locked (counted, usable) or crossed book (raise, or count and skip); return True if usable."""
    if bb == ba:
        report.flag("locked", line, f"book locked after {ident}: best bid == best ask == {bb!r}")
        return True
    if on_crossed == "raise":
        raise crossed_error(path, line, bb, ba, ident)
    report.flag("crossed", line, f"book crossed after {ident}: best bid {bb!r} > best ask {ba!r}; "
                "update left out of the features")
    return False
