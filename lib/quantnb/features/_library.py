"""The registered features: the classifier's bar features and the agent's market indicators.

Every feature is scale-invariant (log-returns, log-ratios, ``log1p`` of counts, bps, ratios),
so a model trained at one price level applies at another. ``prev`` is the previous bar of the
same segment (no value spans a gap of 2 minutes or more, see :data:`GAP_THRESHOLD`).

================== =============================================================== ======
feature            definition                                                      warm-up
================== =============================================================== ======
log_ret_1m, ret_1  ln(close / prev close)                                          2
ret_5, ret_15      ln(close / close 5 or 15 bars earlier)                          6, 16
log_body           ln(close / open)                                                1
log_hl_range       ln(high / low)                                                  1
upper_wick         ln(high / max(open, close))                                     1
lower_wick         ln(min(open, close) / low)                                      1
log_volume         ln(1 + volume)                                                  1
log_volume_chg     ln(1 + volume) - ln(1 + prev volume)                            2
log_n_trades       ln(1 + n_trades)                                                1
buy_volume_frac    buy_volume / volume (0.5 when volume is 0)                      1
log_ret_mid_1m     ln(mid_close / prev mid_close)                         (book)   2
micro_dev_bps      (micro_price_close / mid_close - 1) * 1e4              (book)   1
spread_bps         spread_bps_mean (the bar's mean spread)                (book)   1
imbalance_10       imbalance_10                                           (book)   1
log_depth_10       ln(1 + bid_depth_10 + ask_depth_10)                    (book)   1
log_depth_ratio_10 ln(bid_depth_10 / ask_depth_10)                        (book)   1
log_n_book_updates ln(1 + n_book_updates)                                 (book)   1
sma_ratio_20, _60  close / SMA_n(close) - 1                                        20, 60
bb_pct_b_20        Bollinger %B, (close - (SMA - 2 sd)) / (4 sd), population sd    20
                   over 20 bars (Bollinger, 2001); 0.5 when sd <= 1e-12 * SMA
rsi_14             Wilder's RSI 0..100 (Wilder, 1978): averages of gains and       W
                   losses ``avg = 13/14 avg + 1/14 x`` seeded at the segment start
macd_line          (EMA_12 - EMA_26) / close, EMAs ``alpha = 2 / (n + 1)`` (Appel)  W
macd_signal        EMA_9(EMA_12 - EMA_26) / close                                  W
macd_hist          macd_line - macd_signal                                         W
================== =============================================================== ======

``W`` is the caller's ``warmup_bars`` (default 500, at least 60): the recursions' seed then
weighs under 1e-16, so a live stream started from another bar agrees with research.

Reconciled definitions (research and the agent used to differ): ``log_depth_10`` is
``ln(1 + depth)`` (research's; defined for an empty book) and the spread feature is named
``spread_bps`` (its source column stays ``spread_bps_mean``). Agent bundles trained with the
old definitions are refused at load with that explanation.
"""

from __future__ import annotations

from typing import Any

from quantnb.features._spec import FeatureSpec, register

RETURN_LAGS = (1, 5, 15)
SMA_WINDOWS = (20, 60)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_WINDOW, BB_K = 20, 2.0
DEFAULT_WARMUP_BARS = 500
MIN_RECURSIVE_WARMUP = max(max(RETURN_LAGS) + 1, max(SMA_WINDOWS), BB_WINDOW)
_FLAT_SD_REL = 1e-12


def _log_return(k: int) -> Any:
    return lambda x, o: o.log(x["close"] / x.lag("close", k))


def _pointwise(name: str, sources: tuple[str, ...], formula: Any, doc: str) -> FeatureSpec:
    return register(FeatureSpec(name, sources, formula, warmup_bars=1, doc=doc))


def _lagged(name: str, sources: tuple[str, ...], formula: Any, lag: int, doc: str) -> FeatureSpec:
    return register(FeatureSpec(name, sources, formula, warmup_bars=lag + 1, doc=doc, lookback=lag))


# --- the classifier's bar features (research) -------------------------------------------------
_lagged("log_ret_1m", ("close",), _log_return(1), 1, "ln(close / prev close)")
_pointwise("log_body", ("open", "close"), lambda x, o: o.log(x["close"] / x["open"]), "ln(close / open)")
_pointwise("log_hl_range", ("high", "low"), lambda x, o: o.log(x["high"] / x["low"]), "ln(high / low)")
_pointwise("upper_wick", ("open", "high", "close"),
           lambda x, o: o.log(x["high"] / o.maximum(x["open"], x["close"])), "ln(high / max(open, close))")
_pointwise("lower_wick", ("open", "low", "close"),
           lambda x, o: o.log(o.minimum(x["open"], x["close"]) / x["low"]), "ln(min(open, close) / low)")
_pointwise("log_volume", ("volume",), lambda x, o: o.log1p(x["volume"]), "ln(1 + volume)")
_lagged("log_volume_chg", ("volume",), lambda x, o: o.log1p(x["volume"]) - o.log1p(x.lag("volume", 1)), 1,
        "ln(1 + volume) - ln(1 + prev volume)")
_lagged("log_ret_mid_1m", ("mid_close",), lambda x, o: o.log(x["mid_close"] / x.lag("mid_close", 1)), 1,
        "ln(mid_close / prev mid_close)")
_pointwise("micro_dev_bps", ("micro_price_close", "mid_close"),
           lambda x, o: (x["micro_price_close"] / x["mid_close"] - 1.0) * 1e4, "(micro / mid - 1) * 1e4")
_pointwise("spread_bps", ("spread_bps_mean",), lambda x, o: x["spread_bps_mean"] * 1.0, "mean spread of the bar, bps")
_pointwise("imbalance_10", ("imbalance_10",), lambda x, o: x["imbalance_10"] * 1.0, "book imbalance, 10 levels")
_pointwise("log_depth_10", ("bid_depth_10", "ask_depth_10"),
           lambda x, o: o.log1p(x["bid_depth_10"] + x["ask_depth_10"]), "ln(1 + bid + ask depth, 10 levels)")
_pointwise("log_depth_ratio_10", ("bid_depth_10", "ask_depth_10"),
           lambda x, o: o.log(x["bid_depth_10"] / x["ask_depth_10"]), "ln(bid depth / ask depth)")
_pointwise("log_n_trades", ("n_trades",), lambda x, o: o.log1p(x["n_trades"]), "ln(1 + n_trades)")
_pointwise("buy_volume_frac", ("buy_volume", "volume"),
           lambda x, o: o.where(x["volume"] > 0, x["buy_volume"] / x["volume"], 0.5), "buy volume / volume")
_pointwise("log_n_book_updates", ("n_book_updates",), lambda x, o: o.log1p(x["n_book_updates"]),
           "ln(1 + n_book_updates)")

# --- the agent's market indicators -------------------------------------------------------------
for _k in RETURN_LAGS:
    _lagged(f"ret_{_k}", ("close",), _log_return(_k), _k, f"ln(close / close {_k} bars earlier)")


def _sma_ratio(w: int) -> Any:
    return lambda x, o: x["close"] / (o.total(x.window("close", w)) / w) - 1.0


for _w in SMA_WINDOWS:
    register(FeatureSpec(f"sma_ratio_{_w}", ("close",), _sma_ratio(_w), warmup_bars=_w, lookback=_w - 1,
                         doc=f"close / SMA_{_w} - 1"))


def _pct_b(x: Any, o: Any) -> Any:
    win = x.window("close", BB_WINDOW)
    mean = o.total(win) / BB_WINDOW
    sd = o.sqrt(o.total([(v - mean) * (v - mean) for v in win]) / BB_WINDOW)
    return o.where(sd > _FLAT_SD_REL * mean, (x["close"] - (mean - BB_K * sd)) / (2.0 * BB_K * sd), 0.5)


register(FeatureSpec(f"bb_pct_b_{BB_WINDOW}", ("close",), _pct_b, warmup_bars=BB_WINDOW, lookback=BB_WINDOW - 1,
                     doc="Bollinger %B, 20 bars, 2 sd"))


def _rsi(x: Any, o: Any) -> Any:
    d = x["close"] - x.lag("close", 1)
    avg_gain = x.ema(o.where(d > 0, d, 0.0), 1.0 / RSI_PERIOD)
    avg_loss = x.ema(o.where(d < 0, -d, 0.0), 1.0 / RSI_PERIOD)
    return o.where(avg_loss > 0, 100.0 - 100.0 / (1.0 + avg_gain / avg_loss), o.where(avg_gain > 0, 100.0, 50.0))


def _macd(x: Any) -> Any:
    close = x["close"]
    return x.ema(close, 2.0 / (MACD_FAST + 1)) - x.ema(close, 2.0 / (MACD_SLOW + 1))


def _macd_signal(x: Any) -> Any:
    return x.ema(_macd(x), 2.0 / (MACD_SIGNAL + 1))


def _recursive(name: str, formula: Any, doc: str) -> None:
    register(FeatureSpec(name, ("close",), formula, warmup_bars=MIN_RECURSIVE_WARMUP, recursive=True, doc=doc,
                         lookback=1))


_recursive(f"rsi_{RSI_PERIOD}", _rsi, "Wilder's RSI, 14 bars")
_recursive("macd_line", lambda x, o: _macd(x) / x["close"], "(EMA_12 - EMA_26) / close")
_recursive("macd_signal", lambda x, o: _macd_signal(x) / x["close"], "EMA_9(EMA_12 - EMA_26) / close")
_recursive("macd_hist", lambda x, o: _macd(x) / x["close"] - _macd_signal(x) / x["close"], "macd_line - macd_signal")

#: The classifier's features (research, labelling, training), in canonical order.
RESEARCH_FEATURES: tuple[str, ...] = (
    "log_ret_1m", "log_body", "log_hl_range", "upper_wick", "lower_wick", "log_volume", "log_volume_chg",
    "log_ret_mid_1m", "micro_dev_bps", "spread_bps", "imbalance_10", "log_depth_10", "log_depth_ratio_10",
    "log_n_trades", "buy_volume_frac", "log_n_book_updates",
)
#: The agent's price indicators (need ``close`` only), in canonical order.
MARKET_FEATURES: tuple[str, ...] = (
    *(f"ret_{k}" for k in RETURN_LAGS), *(f"sma_ratio_{w}" for w in SMA_WINDOWS), f"rsi_{RSI_PERIOD}",
    "macd_line", "macd_signal", "macd_hist", f"bb_pct_b_{BB_WINDOW}",
)
#: The agent's order-book features and their source columns.
BOOK_FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    "spread_bps": ("spread_bps_mean",),
    "imbalance_10": ("imbalance_10",),
    "micro_dev_bps": ("micro_price_close", "mid_close"),
    "log_depth_10": ("bid_depth_10", "ask_depth_10"),
}
AGENT_FEATURES: tuple[str, ...] = (*MARKET_FEATURES, *BOOK_FEATURE_SOURCES)
