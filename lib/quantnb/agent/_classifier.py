"""The classifier's signal in the agent's observation: class probabilities of a trained model bundle.

The training stage's TCN-LSTM (``runs/<training run>/model``) reads a window of ``seq_len``
scaled research features ending at bar ``t`` and gives P(SELL), P(NEUTRAL), P(BUY). The agent
sees them as three more feature columns (:data:`CLASSIFIER_FEATURES`), scaled and windowed
like the others. They are causal (bar ``t`` uses bars up to ``t``) and follow the one gap
policy: the window must lie in one segment, so they are null for ``seq_len`` bars after a gap.

The environment computes them for all bars at once (:meth:`ClassifierSignal.batch`), the live
trader one closed bar at a time (:meth:`ClassifierSignal.stream`); both use the same features
(:mod:`quantnb.features`), the same scaler and the same network, and agree to 1e-6 (float32
network, evaluated in batches of windows versus one window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from quantnb.agent._incremental import IncrementalFeatures
from quantnb.classifier import ModelBundle, load_model_bundle
from quantnb.errors import ConfigError, DataError
from quantnb.features import (
    FORWARD_FILLED,
    FeatureStream,
    RowWindow,
    compute_batch,
    get_specs,
    segment_start_expr,
)

CLASSIFIER_FEATURES: tuple[str, ...] = ("clf_p_sell", "clf_p_neutral", "clf_p_buy")
_BATCH = 1024


class ClassifierSignal:
    """A trained classifier bundle turned into three probability features.

    Parameters
    ----------
    bundle : quantnb.classifier.ModelBundle
        Loaded with :func:`quantnb.classifier.load_model_bundle`; its metadata holds ``seq_len``.

    Raises
    ------
    ConfigError
        If the bundle has no ``seq_len`` or the model does not give three classes.
    """

    def __init__(self, bundle: ModelBundle) -> None:
        seq_len = bundle.metadata.get("seq_len")
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ConfigError(f"{bundle.path}: config_metadata.yaml has no positive integer seq_len; "
                              "use the 'model' directory of a training run")
        self.bundle = bundle
        self.seq_len = int(seq_len)
        self.features = list(bundle.features)
        self.model = bundle.model.to("cpu").eval()

    @classmethod
    def load(cls, directory: str | Path) -> ClassifierSignal:
        """Load the model bundle in ``directory`` (a training run's ``model`` directory).

        Parameters
        ----------
        directory : str or Path
            The model bundle directory.

        Returns
        -------
        ClassifierSignal

        Raises
        ------
        ConfigError
            If the bundle is missing or invalid (the message names the file).
        """
        return cls(load_model_bundle(directory))

    def _probs(self, windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        if logits.shape[-1] != len(CLASSIFIER_FEATURES):
            raise ConfigError(f"{self.bundle.path}: the model gives {logits.shape[-1]} classes, the agent needs 3")
        return torch.softmax(logits.double(), dim=-1).numpy()

    def batch(self, bars: pl.DataFrame, rows: tuple[int, int] | None = None) -> pl.DataFrame:
        """Return the class probabilities of every bar (or of the bars in ``rows`` only).

        Parameters
        ----------
        bars : polars.DataFrame
            Bars (``ts`` strictly increasing) with the classifier's source columns.
        rows : (int, int), optional
            Run the network only for the bars at positions ``lo <= i < hi``; the others are null.
            Features still see every bar, so these rows equal those of the whole computation.

        Returns
        -------
        polars.DataFrame
            ``ts`` and :data:`CLASSIFIER_FEATURES` (Float64, rows sum to 1); null where the
            ``seq_len`` window ending at the bar is not complete inside one segment.

        Raises
        ------
        DataError
            If a source column is missing or ``ts`` does not increase.
        """
        feats = compute_batch(bars, self.features)
        x = self.bundle.scaler.transform(feats, dtype=np.float32)
        n, w = bars.height, self.seq_len
        seg = bars.select(segment_start_expr(bars.columns).cum_sum()).to_series().to_numpy() if n else np.zeros(0)
        ok = np.isfinite(x).all(axis=1).astype(np.int64)
        full = np.zeros(n, dtype=bool)
        if n >= w:
            complete = np.convolve(ok, np.ones(w, dtype=np.int64))[w - 1 : n] == w
            full[w - 1 :] = complete & (seg[w - 1 :] == seg[: n - w + 1])  # the window lies in one segment
        if rows is not None:
            full[: max(rows[0], 0)] = False
            full[max(rows[1], 0):] = False
        ends = np.flatnonzero(full)
        out = np.full((n, len(CLASSIFIER_FEATURES)), np.nan)
        for lo in range(0, ends.size, _BATCH):
            e = ends[lo : lo + _BATCH]
            out[e] = self._probs(np.stack([x[i - w + 1 : i + 1] for i in e]))
        frame = pl.DataFrame({"ts": bars["ts"]} if "ts" in bars.columns else {})
        return frame.with_columns([pl.Series(c, out[:, j]).fill_nan(None) for j, c in enumerate(CLASSIFIER_FEATURES)])

    def stream(self) -> ClassifierStream:
        """Return a fresh one-bar-at-a-time computation of the probabilities (for the live trader)."""
        return ClassifierStream(self)


class ClassifierStream:
    """The classifier's probabilities, one closed bar at a time (see :meth:`ClassifierSignal.stream`)."""

    def __init__(self, signal: ClassifierSignal) -> None:
        self.signal = signal
        self._feats = FeatureStream(signal.features, window=signal.seq_len)

    def update(self, bar: Mapping[str, Any]) -> np.ndarray | None:
        """Add one closed bar; return its probabilities."""
        self._feats.update(bar)
        win = self._feats.window_array()
        if win is None:
            return None
        x = self.signal.bundle.scaler.transform(win, dtype=np.float32)
        return self.signal._probs(x[None])[0]


class AgentFeatureStream(RowWindow):
    """The agent's live feature rows: market features, then (when the bundle has one) the classifier's.

    Drop-in for :class:`IncrementalFeatures`. The classifier's forward pass is deferred to
    :meth:`window_array` / :attr:`ready` and batched over the rows still missing it, so a long warm-up
    runs the network only for the ``window`` rows the observation reads; when the classifier's features
    are local (neither recursive nor forward-filled) its engine is fed only the bars the window needs.

    Parameters
    ----------
    feature_names : sequence of str
        The bundle's features in output order; :data:`CLASSIFIER_FEATURES` last, exactly when ``classifier``.
    window, warmup_bars
        As in :class:`IncrementalFeatures`.
    classifier : ClassifierSignal, optional
        The bundle's classifier, whose probabilities end each row.

    Raises
    ------
    ConfigError
        If the classifier's features are misplaced, or present without a classifier (or the reverse).
    """

    def __init__(self, feature_names: Sequence[str], *, window: int, warmup_bars: int,
                 classifier: ClassifierSignal | None = None) -> None:
        names = list(feature_names)
        has = [c for c in CLASSIFIER_FEATURES if c in names]
        if (classifier is None) != (not has) or (has and names[-3:] != list(CLASSIFIER_FEATURES)):
            raise ConfigError(f"features {names}: the classifier's {list(CLASSIFIER_FEATURES)} must come last, "
                              "and exactly when the bundle has a classifier")
        self.feature_names = tuple(names)
        self.window = int(window)
        self.warmup_bars = int(warmup_bars)
        self._market = IncrementalFeatures(names[:-3] if has else names, window=1, warmup_bars=warmup_bars)
        self._clf = classifier
        self._rows: deque[np.ndarray] = deque(maxlen=self.window)
        self._pending: deque[int] = deque(maxlen=self.window)  # bar numbers of rows whose probabilities wait
        if classifier is not None:
            self._clf_feats = FeatureStream(classifier.features, window=classifier.seq_len)
            specs = get_specs(classifier.features)
            self._clf_sources = tuple(dict.fromkeys(c for s in specs for c in s.sources))
            self._clf_source_set = frozenset(self._clf_sources)
            # rows of non-recursive, non-forward-filled features depend on the last few bars only
            local = not any(s.recursive for s in specs) and not set(self._clf_sources) & FORWARD_FILLED
            depth = max([s.warmup_bars + s.lookback for s in specs] + [1])
            self._local = local
            self._unseen: deque[tuple[int, Mapping[str, Any]]] = deque(
                maxlen=self.window + classifier.seq_len + depth)
            self._wins: deque[np.ndarray | None] = deque(maxlen=self.window)  # not local: the pending rows' windows
        self._n = 0  # bars pushed
        self._clf_n = 0  # bars the classifier's feature engine has seen

    @property
    def n_seen(self) -> int:
        """Return the number of bars fed."""
        return self._market.n_seen

    @property
    def ready(self) -> bool:
        """Return True once :meth:`window_array` has ``window`` rows (computes deferred probabilities)."""
        self._resolve()
        return len(self._rows) == self.window

    def push(self, bar: Mapping[str, Any]) -> None:
        """Add one closed bar; its classifier probabilities are computed when a window is asked for.

        Parameters
        ----------
        bar : mapping
            As in :meth:`IncrementalFeatures.update`, plus the source columns of the classifier's features.

        Raises
        ------
        DataError
            If ``bar`` lacks a field the features need.
        """
        if self._clf is not None and not self._clf_source_set.issubset(bar.keys()):
            missing = [c for c in self._clf_sources if c not in bar]
            if missing:
                raise DataError(f"bar lacks fields {missing} (fields: {sorted(bar)}) that the classifier's "
                                "features need; add them to the feed or use an agent trained without the classifier",
                                bar=str(bar.get("ts")), field=missing[0])
        row = self._market.update(bar)
        self._n += 1
        if self._market.n_segment == 1:  # a start or a gap: the window restarts, as in the environment
            self._clear()
        win = None
        if self._clf is not None:
            if self._local:
                self._unseen.append((self._n, dict(bar)))  # a copy: the caller may reuse its mapping
            else:  # rows depend on every earlier bar: the feature engine sees each bar now
                self._clf_feats.update(bar)
                win = self._clf_feats.window_array() if row is not None else None
                self._clf_n = self._n
        if row is None:
            self._clear()
            return
        if self._clf is not None:
            self._pending.append(self._n)  # the market row now; the probabilities join it in _resolve
            if not self._local:
                self._wins.append(win)
        self._rows.append(row)

    def update(self, bar: Mapping[str, Any]) -> np.ndarray | None:
        """Add one closed bar; return its full feature row (the classifier runs now).

        Parameters
        ----------
        bar : mapping
            As in :meth:`push`.

        Returns
        -------
        numpy.ndarray, shape (n_features,), float64, or None
            None during warm-up (after the start or a gap).
        """
        self.push(bar)
        self._resolve()
        return self._rows[-1].copy() if self._rows else None  # rows end at the newest bar, or are empty

    def _clear(self) -> None:
        self._rows.clear()
        self._pending.clear()
        if self._clf is not None:
            self._wins.clear()

    def _resolve(self) -> None:
        """Compute the waiting rows' probabilities in one batch; drop rows whose classifier window is incomplete."""
        if self._clf is None or not self._pending:
            return
        sig, todo = self._clf, set(self._pending)
        windows: dict[int, np.ndarray | None] = {} if self._local else dict(zip(self._pending, self._wins, strict=True))
        if self._local:
            if self._unseen[0][0] != self._clf_n + 1:  # older bars were dropped: rows here do not depend on them
                self._clf_feats = FeatureStream(sig.features, window=sig.seq_len)
            for n, bar in self._unseen:
                self._clf_feats.update(bar)
                if n in todo:
                    windows[n] = self._clf_feats.window_array()
            self._clf_n = self._unseen[-1][0]
            self._unseen.clear()
        rows, pending = list(self._rows), list(self._pending)
        offset = len(rows) - len(pending)  # pending rows are the newest ones
        bad = [i for i, n in enumerate(pending) if windows.get(n) is None]
        keep = pending[bad[-1] + 1:] if bad else pending
        if bad:  # an incomplete classifier window ends the rows before it, as a None row does
            rows = rows[offset + bad[-1] + 1:]
            offset = 0
        if keep:
            x = sig.bundle.scaler.transform(np.concatenate([windows[n] for n in keep]), dtype=np.float32)
            probs = sig._probs(x.reshape(len(keep), sig.seq_len, -1))
            for j, p in enumerate(probs):
                rows[offset + j] = np.concatenate([rows[offset + j], p])
        self._rows = deque(rows, maxlen=self.window)
        self._pending.clear()
        self._wins.clear()
