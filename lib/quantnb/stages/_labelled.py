from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from loguru import logger

from quantnb.errors import ConfigError


def load_labelled(root: Path, labelled_dir: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read every labelled Parquet of ``labelled_dir`` in time order, and its labelling config.

    Raises
    ------
    ConfigError
        If the directory holds no labelled file or no ``labelling_config.json``.
    """
    folder = root / labelled_dir
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise ConfigError(f"labelled_dir={labelled_dir!r}: no Parquet under {folder}; run the labelling stage first")
    try:
        config = json.loads((folder / "labelling_config.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder / 'labelling_config.json'} missing: the labelling run did not finish; "
                          "resume it (quantnb run labelling --resume <run_id>)") from None
    frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").sort("ts")
    logger.info("Loaded {} labelled rows from {} file(s) in {} ({} .. {})", frame.height, len(files),
                labelled_dir, frame["ts"].min(), frame["ts"].max())
    return frame, config
