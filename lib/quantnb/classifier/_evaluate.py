from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from quantnb.classifier._dataset import WindowDataset
from quantnb.classifier._labels import LABEL_NAMES
from quantnb.classifier._meta import META_LABEL_NAMES
from quantnb.classifier._metrics import ClassificationScores, classification_scores
from quantnb.runs import atomic_path

_TITLE_CHARS = 36  # a longer confusion-matrix title is split after its run id


@dataclass(frozen=True)
class Evaluation:
    """Scores of a model on a window dataset.

    Attributes
    ----------
    scores : ClassificationScores
        F1 macro, weighted, per class and the confusion matrix.
    loss : float
        Mean cross-entropy (class-weighted when weights were given; NaN with no samples).
    n_samples : int
        Windows evaluated.
    predictions : numpy.ndarray, shape (n_samples,), int64
        Predicted class of each window, in dataset order (not in ``to_dict``).
    probabilities : numpy.ndarray, shape (n_samples, n_classes), float32
        Softmax of the logits of each window, in dataset order (not in ``to_dict``).
    """

    scores: ClassificationScores
    loss: float
    n_samples: int
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False)
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.float32), repr=False,
                                      compare=False)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON/YAML-ready dict: f1_macro, f1_weighted, f1 per class, accuracy, loss, confusion.

        Classes are named SELL/NEUTRAL/BUY for 3 classes and SKIP/TAKE (meta-labels) for 2.
        """
        s = self.scores
        return {"f1_macro": s.f1_macro, "f1_weighted": s.f1_weighted,
                **{f"f1_{n.lower()}": v for n, v in zip(class_names(len(s.f1_per_class)), s.f1_per_class,
                                                           strict=True)},
                "accuracy": s.accuracy, "loss": self.loss, "n_samples": self.n_samples,
                "confusion": s.confusion.tolist()}


@torch.no_grad()
def evaluate(model: nn.Module, dataset: WindowDataset, *, batch_size: int = 1024,
             device: torch.device | str | None = None,
             class_weights: Sequence[float] | torch.Tensor | None = None) -> Evaluation:
    """Predict every window of ``dataset`` in order and score the predictions.

    Parameters
    ----------
    model : torch.nn.Module
        Maps x of shape (batch, seq_len, n_features) float32 to logits (batch, n_classes), 3 classes
        or 2 (meta-labels); put in eval mode here and left in eval mode.
    dataset : WindowDataset
        Windows with targets in ``[0, n_classes)``.
    batch_size : int
        Windows per forward pass.
    device : torch.device or str, optional
        Where to run; default the model's device.
    class_weights : sequence of n_classes float or torch.Tensor, optional
        Weights of the reported cross-entropy; default unweighted.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=dev)
    model.eval()
    n_classes = int(getattr(model, "n_classes", 3))
    preds, probs, loss_sum, weight_sum = [], [], torch.zeros((), device=dev), torch.zeros((), device=dev)
    for start in range(0, len(dataset), batch_size):
        x, y = dataset.get_batch(np.arange(start, min(start + batch_size, len(dataset))))
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        logits = model(x)
        n_classes = int(logits.shape[1])
        loss_sum += F.cross_entropy(logits, y, weight=weight, reduction="sum")
        weight_sum += weight[y].sum() if weight is not None else y.numel()
        preds.append(logits.argmax(dim=1).cpu())
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
    y_pred = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    prob = torch.cat(probs).numpy() if probs else np.zeros((0, n_classes), dtype=np.float32)
    loss = float(loss_sum / weight_sum) if float(weight_sum) > 0 else float("nan")
    return Evaluation(classification_scores(dataset.targets, y_pred, n_classes), loss, len(dataset),
                      y_pred.astype(np.int64), prob)


def class_names(n_classes: int) -> tuple[str, ...]:
    """Return the class names of a classifier's output: SELL/NEUTRAL/BUY (3), SKIP/TAKE (2, meta-labels)."""
    if n_classes == len(LABEL_NAMES):
        return LABEL_NAMES
    if n_classes == len(META_LABEL_NAMES):
        return META_LABEL_NAMES
    return tuple(f"class{i}" for i in range(n_classes))


def plot_confusion_matrix(confusion: np.ndarray, path: str | os.PathLike[str], *, title: str = "Confusion matrix",
                          class_names: Sequence[str] = LABEL_NAMES) -> Path:
    """Save a confusion-matrix heat map as PNG (Agg backend, no display needed), atomically.

    Each cell shows the count and the share of its true-class row.

    Parameters
    ----------
    confusion : numpy.ndarray, shape (n_classes, n_classes), integer
        Rows true class, columns predicted class.
    path : str or os.PathLike
        Destination PNG; parent directories are created.
    title : str
        Figure title, e.g. with the run id and F1 macro.
    class_names : sequence of str
        Axis labels.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    fig = Figure(figsize=(4.8, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of true class")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=list(class_names))
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    head, sep, tail = title.rpartition(": ")  # "<run id>: test confusion matrix" on two lines: never clipped
    fig.suptitle(f"{head}:\n{tail}" if sep and len(title) > _TITLE_CHARS else title, fontsize=9)  # over the
    # whole figure: a long title centred on the axes ran into the colour bar
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.1%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    fig.tight_layout()
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest
