from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from loguru import logger

from quantnb.data import data_columns, read_bar_files
from quantnb.errors import ConfigError


def load_labelled(root: Path, labelled_dir: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read every labelled Parquet of ``labelled_dir`` in time order, and its labelling config.

    Parameters
    ----------
    root : pathlib.Path
        Project directory.
    labelled_dir : str
        The labelling stage's output folder, relative to ``root``.

    Returns
    -------
    (frame, config) : tuple of polars.DataFrame and dict
        The bars (columns without any value dropped) and ``labelling_config.json``.

    Raises
    ------
    ConfigError
        If the folder holds no Parquet or no ``labelling_config.json`` (an unfinished run).
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
    frame = read_bar_files(files)
    frame = _drop_empty_columns(frame)
    logger.info("Loaded {} labelled rows from {} file(s) in {} ({} .. {})", frame.height, len(files),
                labelled_dir, frame["ts"].min(), frame["ts"].max())
    return frame, config


def _drop_empty_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Drop the columns without data (:func:`quantnb.data.data_columns`: e.g. book columns of OHLCV bars), logged."""
    keep = set(data_columns(frame))
    empty = [c for c in frame.columns if c not in keep]
    if empty:
        logger.info("Columns without any value, left out of the features: {}", ", ".join(empty))
    return frame.drop(empty)
