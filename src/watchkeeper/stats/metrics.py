"""Model-performance metrics from mergeable counts, and confidence-based estimation.

Everything here works on integer tallies (confusion matrices, score histograms per label)
so that windows and partitions merge exactly before any metric is computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special


def _ratio(num: Any, den: Any) -> Any:
    """num / den, NaN where den is 0; a float for scalars, an array for arrays."""
    n, d = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    r = np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)
    return float(r) if r.ndim == 0 else r


def binary_metrics(tp: Any, fp: Any, fn: Any, tn: Any) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, selection rate, TPR and FPR of a 2×2 confusion matrix.

    Counts may be expected (fractional) counts, as in confidence-based estimation.

    >>> m = binary_metrics(40, 10, 10, 40)
    >>> m["accuracy"], m["precision"], m["recall"], m["f1"]
    (0.8, 0.8, 0.8, 0.8)
    """
    n = tp + fp + fn + tn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "selection_rate": _ratio(tp + fp, n),
        "tpr": recall,
        "fpr": _ratio(fp, fp + tn),
    }


def multiclass_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1 of a (true × predicted) matrix.

    >>> multiclass_metrics(np.array([[5, 0, 0], [0, 3, 2], [0, 0, 0]]))["accuracy"]
    0.8
    """
    c = np.asarray(confusion, dtype=float)
    tp = np.diag(c)
    predicted, actual = c.sum(axis=0), c.sum(axis=1)
    present = actual > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": _ratio(tp.sum(), c.sum()),
        "precision": float(precision[present].mean()) if present.any() else float("nan"),
        "recall": float(recall[present].mean()) if present.any() else float("nan"),
        "f1": float(f1[present].mean()) if present.any() else float("nan"),
    }


def binned_auc(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """ROC-AUC from score histograms of the positive and negative class on the same
    ascending bins; pairs within one bin count one half (as ties do). Broadcasts over
    leading axes and accepts expected (fractional) counts.

    >>> float(binned_auc(np.array([0, 1, 3]), np.array([3, 1, 0])))
    0.96875
    """
    pos = np.asarray(positives, dtype=float)
    neg = np.asarray(negatives, dtype=float)
    below = np.cumsum(neg, axis=-1) - neg  # negatives in strictly lower bins
    wins = (pos * (below + 0.5 * neg)).sum(axis=-1)
    pairs = pos.sum(axis=-1) * neg.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def isotonic(y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit to ``y`` with weights (pool adjacent violators).

    Used to calibrate a classifier's score bins: ``y`` the share of positives per bin.

    >>> isotonic(np.array([0.1, 0.3, 0.2, 0.9]), np.array([1.0, 1.0, 1.0, 1.0])).tolist()
    [0.1, 0.25, 0.25, 0.9]
    """
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for v, w in zip(np.asarray(y, float), np.asarray(weight, float), strict=True):
        values.append(v)
        weights.append(w)
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w2 = weights[-2] + weights[-1]
            v2 = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w2 if w2 > 0 else (
                0.5 * (values[-2] + values[-1]))
            values[-2:] = [v2]
            weights[-2:] = [w2]
            sizes[-2:] = [sizes[-2] + sizes[-1]]
    return np.repeat(values, sizes)


def calibrate_bins(positives: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """P(positive | score bin) from reference counts, isotonic in the score. Empty bins
    take the overall rate with a negligible weight, so they follow their neighbours
    without pulling any observed bin towards the mean (which biased estimates low)."""
    pos = np.asarray(positives, dtype=float)
    tot = np.asarray(totals, dtype=float)
    base = pos.sum() / tot.sum() if tot.sum() > 0 else 0.5
    share = np.where(tot > 0, pos / np.where(tot > 0, tot, 1.0), base)
    return np.clip(isotonic(share, np.where(tot > 0, tot, 1e-9)), 0.0, 1.0)


def score_means(score_sums: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Mean score per cell (score bin × predicted class): the scores used as they are, on
    the same footing as a calibration table. A cell without rows takes the value
    interpolated from its class's neighbouring bins (the other class's if it has none).

    >>> score_means(np.array([[0.2, 0.0], [0.0, 1.4]]), np.array([[2, 0], [0, 2]])).tolist()
    [[0.1, 0.7], [0.1, 0.7]]
    """
    sums = np.asarray(score_sums, dtype=float)
    tot = np.asarray(totals, dtype=float)
    out = np.full(sums.shape, np.nan)
    bins = np.arange(sums.shape[0])
    for k in range(sums.shape[1]):
        seen = tot[:, k] > 0
        if seen.any():
            out[:, k] = np.interp(bins, bins[seen], sums[seen, k] / tot[seen, k])
    missing = ~np.isfinite(out).all(axis=0)
    if missing.all():
        return np.full(sums.shape, 0.5)
    out[:, missing] = out[:, ~missing].mean(axis=1, keepdims=True)
    return np.clip(out, 0.0, 1.0)


def calibration_test(
    positives: np.ndarray,
    score_sums: np.ndarray,
    score_variances: np.ndarray,
    totals: np.ndarray,
    *,
    groups: int = 10,
    min_group_rows: int = 100,
) -> dict[str, float]:
    """Test that labels follow the scores as they are (a Hosmer–Lemeshow-type test).

    Arguments are per cell (score bin × predicted class, bins ascending): positives,
    Σ score, Σ score·(1 − score) and rows. Within each predicted class consecutive bins are
    pooled into up to ``groups`` groups of about equal rows (at least ``min_group_rows``
    each); a group adds (positives − Σ score)² / Σ score·(1 − score), χ² with one degree of
    freedom if the scores are calibrated (they are taken as given, not fitted to these
    labels). Grouping by predicted class makes the test look where the confusion matrix
    does: a miscalibration that moves the expected accuracy, precision or recall moves the
    positives of some group. Returns ``statistic``, ``df`` and ``p_value``.
    """
    pos = np.asarray(positives, dtype=float)
    sums = np.asarray(score_sums, dtype=float)
    var = np.asarray(score_variances, dtype=float)
    tot = np.asarray(totals, dtype=float)
    statistic, df = 0.0, 0
    for k in range(tot.shape[1]):
        n = tot[:, k].sum()
        if n <= 0:
            continue
        g = int(max(1, min(groups, n // min_group_rows)))
        mid = np.cumsum(tot[:, k]) - tot[:, k] / 2
        group = np.minimum((g * mid / n).astype(np.int64), g - 1)
        residual = np.bincount(group, weights=pos[:, k] - sums[:, k], minlength=g)
        variance = np.bincount(group, weights=var[:, k], minlength=g)
        used = np.bincount(group, weights=tot[:, k], minlength=g) > 0
        if np.any(used & (variance <= 0) & (np.abs(residual) > 1e-9)):
            return {"statistic": float("inf"), "df": df + int(used.sum()), "p_value": 0.0}
        used &= variance > 0
        statistic += float((residual[used] ** 2 / variance[used]).sum())
        df += int(used.sum())
    p_value = float(special.chdtrc(df, statistic)) if df else float("nan")
    return {"statistic": statistic, "df": df, "p_value": p_value}


def expected_binary(counts: np.ndarray, calibration: np.ndarray, positive: int) -> dict[str, float]:
    """Confidence-based estimate of binary metrics for unlabeled rows.

    ``counts[b, p]`` is the number of rows in score bin ``b`` predicted as class ``p``
    (0 negative, 1 positive); ``calibration[b, p]`` is P(positive | bin, predicted class)
    (or ``calibration[b]``, the same for both classes). Returns the expected metrics,
    ROC-AUC included (the binned AUC of the expected label histograms).
    """
    c = np.asarray(counts, dtype=float)
    cal = _per_cell(calibration)
    pos_pred, neg_pred = c[:, positive], c[:, 1 - positive]
    tp = float((pos_pred * cal[:, positive]).sum())
    fp = float((pos_pred * (1 - cal[:, positive])).sum())
    fn = float((neg_pred * cal[:, 1 - positive]).sum())
    tn = float((neg_pred * (1 - cal[:, 1 - positive])).sum())
    out = binary_metrics(tp, fp, fn, tn)
    positives = (c[:, :2] * cal).sum(axis=1)
    out["roc_auc"] = float(binned_auc(positives, c[:, :2].sum(axis=1) - positives))
    return out


def _per_cell(calibration: np.ndarray) -> np.ndarray:
    cal = np.clip(np.asarray(calibration, dtype=float), 0.0, 1.0)
    return np.column_stack([cal, cal]) if cal.ndim == 1 else cal


def _draw_expected_binary(counts: np.ndarray, calibration: np.ndarray, positive: int,
                          draws: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each metric over ``draws`` label draws: each cell's positives Binomial(rows,
    P(positive | bin, predicted class)); NaN draws left out."""
    c = np.asarray(counts, dtype=np.int64)
    cal = _per_cell(calibration)
    pos_pred, neg_pred = c[:, positive], c[:, 1 - positive]
    tp = rng.binomial(pos_pred, cal[:, positive], size=(draws, len(c)))
    fn = rng.binomial(neg_pred, cal[:, 1 - positive], size=(draws, len(c)))
    fp, tn = pos_pred - tp, neg_pred - fn
    sums = [x.sum(axis=1).astype(float) for x in (tp, fp, fn, tn)]
    with np.errstate(invalid="ignore", divide="ignore"):
        metrics = binary_metrics(*sums)
    metrics["roc_auc"] = binned_auc(tp + fn, fp + tn)
    out = {}
    for name, values in metrics.items():
        v = np.asarray(values, dtype=float)
        out[name] = v[np.isfinite(v)]
    return out


def bootstrap_expected_binary(
    counts: np.ndarray,
    calibration: np.ndarray,
    positive: int,
    *,
    draws: int = 200,
    rng: np.random.Generator,
) -> dict[str, tuple[float, float]]:
    """95% sampling band of the realised metrics if labels followed the calibration:
    each cell's positives are drawn Binomial(rows, P(positive | bin, predicted class))."""
    return {name: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))) if v.size
            else (float("nan"), float("nan"))
            for name, v in _draw_expected_binary(counts, calibration, positive, draws,
                                                 rng).items()}


def sampling_sd_expected_binary(counts: np.ndarray, calibration: np.ndarray, positive: int,
                                *, draws: int = 100,
                                rng: np.random.Generator) -> dict[str, float]:
    """Sampling sd of the realised metrics if labels followed the calibration (the same
    draws as :func:`bootstrap_expected_binary`; an sd is steadier than a band's ends)."""
    return {name: float(np.std(v, ddof=1)) if v.size > 2 else float("nan")
            for name, v in _draw_expected_binary(counts, calibration, positive, draws,
                                                 rng).items()}


def shift_sd(errors: np.ndarray, sampling_sd: np.ndarray, *, alpha: float = 0.05) -> float:
    """The sd of an estimator's own error across shifted chunks, apart from sampling noise.

    Each chunk's error is its own bias plus sampling noise of sd ``sampling_sd``. If
    Σ (error / sampling_sd)² is within what sampling noise gives (χ² with one degree of
    freedom per chunk, at level ``alpha``), the answer is 0: a handful of chunks would
    otherwise turn sampling flukes into a bias. Otherwise it is the random-effects moment
    estimate √(mean(error² − sampling_sd²)). NaN values are left out.

    >>> shift_sd(np.array([0.05, -0.05]), np.array([0.014, 0.014]))
    0.048
    >>> shift_sd(np.array([0.02, -0.01]), np.array([0.014, 0.014]))
    0.0
    """
    e, s = np.asarray(errors, dtype=float), np.asarray(sampling_sd, dtype=float)
    ok = np.isfinite(e) & np.isfinite(s) & (s > 0)
    if not ok.any():
        return 0.0
    e, s = e[ok], s[ok]
    if special.chdtrc(e.size, float(np.sum(np.square(e / s)))) >= alpha:
        return 0.0
    return round(float(np.sqrt(max(0.0, float(np.mean(np.square(e) - np.square(s)))))), 12)


def widen_band(estimate: float, band: tuple[float, float], sd: float,
               z: float = 1.96) -> tuple[float, float]:
    """A sampling band around ``estimate`` widened on each side by the estimator's own
    error (sd ``sd``), the two added in quadrature; the band as it is when ``sd`` is 0.

    >>> tuple(round(x, 6) for x in widen_band(0.8, (0.77, 0.83), 0.02, z=2.0))
    (0.75, 0.85)
    """
    lo, hi = band
    if not sd > 0:
        return lo, hi
    extra = (z * sd) ** 2
    return (estimate - float(np.sqrt(max(estimate - lo, 0.0) ** 2 + extra)),
            estimate + float(np.sqrt(max(hi - estimate, 0.0) ** 2 + extra)))


def error_band(estimate: float, sampling_sd: float, errors: np.ndarray,
               errors_sampling_sd: np.ndarray, *, z: float = 1.96) -> tuple[float, float]:
    """Band of a window's realised metric predicted from earlier windows' errors, for when
    the estimator's error under this drift is seen in labels rather than guessed at init.

    ``errors`` are earlier windows' realised − estimated values, each with the sampling sd
    ``errors_sampling_sd`` of its realised metric. The next error is taken as normal with
    their mean (a bias that persists, e.g. after P(label | inputs) changed) and their sd
    beyond sampling noise; the band is ``estimate`` + mean ± ``z`` · √(the window's own
    sampling variance + that sd² + the mean's variance). NaN pairs are left out; below two
    errors the band is (NaN, NaN).

    >>> tuple(round(x, 4) for x in error_band(0.8, 0.01, np.array([-0.05, -0.07]),
    ...                                       np.array([0.01, 0.01]), z=2.0))
    (0.7054, 0.7746)
    """
    e = np.asarray(errors, dtype=float)
    s = np.asarray(errors_sampling_sd, dtype=float)
    ok = np.isfinite(e) & np.isfinite(s)
    e, s = e[ok], s[ok]
    if e.size < 2:
        return float("nan"), float("nan")
    noise = float(np.mean(np.square(s)))
    spread = max(0.0, float(np.var(e, ddof=1)) - noise)  # the error's own variance
    half = z * float(np.sqrt(sampling_sd ** 2 + spread + (spread + noise) / e.size))
    centre = estimate + float(e.mean())
    return centre - half, centre + half


def regression_metrics(sums: dict[str, float]) -> dict[str, float]:
    """MAE, RMSE, MAPE and R² from error sums (keys n, abs, sq, ape, n_ape, y, y2).

    >>> regression_metrics({"n": 2, "abs": 2.0, "sq": 2.0, "ape": 1.0, "n_ape": 2,
    ...                     "y": 4.0, "y2": 10.0})["r2"]
    0.0
    """
    n = sums.get("n", 0)
    if n <= 0:
        return {k: float("nan") for k in ("mae", "rmse", "mape", "r2")}
    ss_tot = sums["y2"] - sums["y"] ** 2 / n
    return {
        "mae": sums["abs"] / n,
        "rmse": float(np.sqrt(sums["sq"] / n)),
        "mape": _ratio(sums["ape"], sums["n_ape"]),
        "r2": 1.0 - sums["sq"] / ss_tot if ss_tot > 0 else float("nan"),
    }
