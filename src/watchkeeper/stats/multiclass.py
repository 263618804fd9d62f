"""Multiclass metrics from mergeable tallies, and their confidence-based estimate.

The estimate reads two tallies (profiles/task.py): per predicted class, the rows with
scores, Σ P(class) and Σ P(class)·P(class') of the calibrated probabilities; and per class
and bin of its score, rows, Σ P(class), labeled rows and labeled rows of the class. The
expected confusion matrix (true × predicted) is the Σ P(class) per predicted class; its
sampling covariance, if labels follow the probabilities, is diag(Σ p) − Σ p pᵀ per
predicted class (rows independent), so a window's sampling band needs no rows.
"""

from __future__ import annotations

import numpy as np

from watchkeeper.stats.metrics import binned_auc

#: Micro averages: equal to accuracy when every row has a prediction of a known class.
MICRO = ("micro_precision", "micro_recall", "micro_f1")


def _metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro precision/recall/F1 and micro precision/recall/F1 of confusion
    matrices (… × k true × k + 1 predicted, the last "other or missing"), vectorised over
    leading axes. Macro averages are over the classes present (some true rows)."""
    c = np.asarray(confusion, dtype=float)
    k = c.shape[-2]
    tp = np.diagonal(c[..., :k], axis1=-2, axis2=-1)
    predicted, actual = c[..., :k].sum(axis=-2), c.sum(axis=-1)
    present = actual > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(present, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                      0.0)
        n_present = present.sum(axis=-1)

        def macro(x: np.ndarray) -> np.ndarray:
            return np.where(n_present > 0, (x * present).sum(axis=-1) / n_present, np.nan)

        total, hits = c.sum(axis=(-2, -1)), tp.sum(axis=-1)
        micro_p = hits / predicted.sum(axis=-1)
        micro_r = hits / total
        return {
            "accuracy": hits / total,
            "precision": macro(precision),
            "recall": macro(recall),
            "f1": macro(f1),
            "micro_precision": micro_p,
            "micro_recall": micro_r,
            "micro_f1": 2 * micro_p * micro_r / (micro_p + micro_r),
        }


def multiclass_report(confusion: np.ndarray) -> dict[str, float]:
    """The metrics of one (true × predicted + other) confusion matrix; NaN where undefined.

    >>> m = multiclass_report(np.array([[5, 0, 0, 0], [0, 3, 1, 1], [0, 0, 4, 0]]))
    >>> round(m["accuracy"], 3), round(m["micro_precision"], 3), round(m["recall"], 3)
    (0.857, 0.923, 0.867)
    """
    return {k: float(v) for k, v in _metrics(confusion).items()}


def expected_confusion(estimate: np.ndarray) -> np.ndarray:
    """The expected (true × predicted + other) confusion matrix of an estimate tally."""
    e = np.asarray(estimate, dtype=float)
    k = e.shape[0] - 1
    return e[:, 1:1 + k].T


def macro_auc(scores: np.ndarray, *, realised: bool) -> float:
    """Macro one-vs-rest ROC-AUC from the per-class score tally: expected (positives are
    Σ P(class) per bin) or realised (the labeled rows of the class); NaN when no class has
    both kinds of rows."""
    s = np.asarray(scores, dtype=float)
    if realised:
        pos, neg = s[..., 3], s[..., 2] - s[..., 3]
    else:
        pos, neg = s[..., 1], s[..., 0] - s[..., 1]
    aucs = binned_auc(pos, np.maximum(neg, 0.0))
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def expected_multiclass(estimate: np.ndarray, scores: np.ndarray | None) -> dict[str, float]:
    """Confidence-based estimate of a window's multiclass metrics; {} without scored rows."""
    if estimate[:, 0].sum() <= 0:
        return {}
    out = multiclass_report(expected_confusion(estimate))
    if scores is not None:
        out["roc_auc"] = macro_auc(scores, realised=False)
    return out


def draw_expected_multiclass(estimate: np.ndarray, scores: np.ndarray | None, draws: int,
                             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each metric over ``draws`` label draws that follow the calibrated probabilities: per
    predicted class the true-class counts are normal with the tally's mean and covariance
    diag(Σ p) − Σ p pᵀ (clipped at zero); ROC-AUC's positives per class and score bin are
    binomial with the bin's mean probability. NaN draws are left out."""
    e = np.asarray(estimate, dtype=float)
    k = e.shape[0] - 1
    confusion = np.zeros((draws, k, k + 1))
    for j in range(k + 1):
        if e[j, 0] <= 0:
            continue
        mean = e[j, 1:1 + k]
        cov = np.diag(mean) - e[j, 1 + k:].reshape(k, k)
        cov = (cov + cov.T) / 2
        vals, vecs = np.linalg.eigh(cov)
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))
        confusion[:, :, j] = np.clip(mean + rng.standard_normal((draws, k)) @ root.T, 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        metrics = _metrics(confusion)
    if scores is not None:
        s = np.asarray(scores, dtype=float)
        rows = np.rint(s[..., 0]).astype(np.int64)
        share = np.clip(np.where(rows > 0, s[..., 1] / np.maximum(rows, 1), 0.0), 0.0, 1.0)
        pos = rng.binomial(rows, share, size=(draws, *rows.shape)).astype(float)
        aucs = binned_auc(pos, rows - pos)  # draws × k
        finite = np.isfinite(aucs)
        n = finite.sum(axis=1)
        metrics["roc_auc"] = np.where(n > 0, np.where(finite, aucs, 0.0).sum(axis=1)
                                      / np.maximum(n, 1), np.nan)
    out = {}
    for name, values in metrics.items():
        v = np.asarray(values, dtype=float)
        out[name] = v[np.isfinite(v)]
    return out


def sampling_multiclass(estimate: np.ndarray, scores: np.ndarray | None, *, draws: int,
                        rng: np.random.Generator
                        ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """95% sampling band and sampling sd of each metric (see
    :func:`draw_expected_multiclass`)."""
    found = draw_expected_multiclass(estimate, scores, draws, rng)
    nan = float("nan")
    bands = {k: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))) if v.size
             else (nan, nan) for k, v in found.items()}
    sds = {k: float(np.std(v, ddof=1)) if v.size > 2 else nan for k, v in found.items()}
    return bands, sds
