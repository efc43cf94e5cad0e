from __future__ import annotations

import pytest

from quantnb.data import read_bar_files, read_bars
from quantnb.errors import ConfigError, DataError
from tests.agent._helpers import month_bars


def test_read_bars_by_glob_sorted_checked_and_empty_columns_dropped(tmp_path):
    bars = month_bars().head(200).with_columns(spread_bps_mean=None)
    d = tmp_path / "data" / "processed" / "BTC-PERP"
    d.mkdir(parents=True)
    bars.slice(100).write_parquet(d / "b.parquet")
    bars.head(100).write_parquet(d / "a.parquet")
    got = read_bars("data/processed/BTC-PERP/*.parquet", root=tmp_path)
    assert got.equals(bars.drop("spread_bps_mean"))
    assert read_bars(sorted(d.glob("*.parquet")), drop_empty=False).columns == bars.columns
    bars.slice(99, 5).write_parquet(d / "c.parquet")  # a minute written twice
    with pytest.raises(DataError, match=r"bars from .*a.parquet and 2 more files: row 100: .*sort the bars"):
        read_bars("data/processed/BTC-PERP/*.parquet", root=tmp_path)
    with pytest.raises(ConfigError, match="no file matches 'data/nothing/\\*.parquet'.*run the etl stage"):
        read_bars("data/nothing/*.parquet", root=tmp_path)
    (d / "broken.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="broken.parquet: cannot read the bar file"):
        read_bar_files([d / "broken.parquet"])
