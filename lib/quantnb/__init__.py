"""quantnb: research-to-production notebooks for machine-learning crypto trading.

The package is organised by concern: :mod:`quantnb.runs` (run logging, heartbeats,
checkpoints, resume), :mod:`quantnb.data` (readers, book reconstruction, bars),
:mod:`quantnb.stages` (one module per notebook), :mod:`quantnb.classifier`,
:mod:`quantnb.agent`, :mod:`quantnb.live`, :mod:`quantnb.runner` and
:mod:`quantnb.testing`; every error derives from :class:`quantnb.errors.QuantnbError`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
