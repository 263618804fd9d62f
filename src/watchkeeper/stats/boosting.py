"""Gradient-boosted oblivious trees on binned inputs: a correction to a base probability.

Confidence-based estimation assumes P(label | score) is the same in production as in the
reference. Under covariate shift only P(label | inputs) is, and the two differ whenever the
scores are calibrated on average but not within groups of inputs (a model that is
over-confident for one kind of row and under-confident for another). This module learns
that within-group miscalibration on the labeled reference: logistic boosting that starts
from a base margin (the calibrated score) and adds small trees over the binned inputs.

The trees are *oblivious* (one split per level, shared by every cell of the level), as in
CatBoost, so a row's leaf is a few integer comparisons on whole columns, and the model is
a short list of (input, threshold) pairs and leaf values. Inputs are integer codes (bins of
a numeric column, levels of a categorical one); a categorical input's levels are ordered by
the reference's mean residual before the first tree, so a threshold on the order splits
the levels into the two groups that differ most. Rounds stop when the log-loss of a
held-out part of the reference stops improving: with nothing to learn, no tree is kept and
the base probability is returned unchanged.

The same booster fits a regressor's loss model (``loss="squared"``: the leaves fit a mean,
e.g. of the absolute error) with depth-wise trees (``oblivious=False``: each node of a
level has its own split, for errors that depend on interactions of inputs).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> group = rng.integers(0, 2, 20_000)
>>> y = (rng.random(20_000) < np.where(group == 1, 0.8, 0.2)).astype(float)
>>> model = ObliviousBoosting.fit(group[:, None], [2], np.zeros(20_000), y, seed=0)
>>> p = model.predict(np.array([[0], [1]]), np.zeros(2))
>>> [round(float(v), 1) for v in p]
[0.2, 0.8]
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Newton-step shrinkage per tree.
LEARNING_RATE = 0.1
#: L2 penalty on a leaf's value, in units of hessian (about rows × p(1 − p)).
LEAF_PENALTY = 20.0
#: A split must leave at least this much hessian (summed over the level's cells) each side.
MIN_CHILD_HESSIAN = 5.0
#: Leaf values are multiples of this (exact in float32, so a stored model reads back
#: bit for bit; 1.5e-5 in log-odds is far below anything a window can measure).
LEAF_STEP = 2.0 ** -16
#: Rows scored at a time (their comparisons stay in cache).
_CHUNK = 1 << 15
#: Rounds without a better held-out log-loss before stopping.
PATIENCE = 20


def sigmoid(m: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-m))


def _logloss(y: np.ndarray, m: np.ndarray) -> float:
    # log(1 + e^m) − y·m, computed stably
    return float(np.mean(np.logaddexp(0.0, m) - y * m))


def _squared(y: np.ndarray, m: np.ndarray) -> float:
    return float(np.mean(np.square(y - m)))


#: The losses :meth:`ObliviousBoosting.fit` minimises: ``logistic`` (``y`` 0/1, the margin
#: in log-odds) and ``squared`` (``y`` any number, the margin in its units).
LOSSES = ("logistic", "squared")


@dataclass
class ObliviousBoosting:
    """Trees as (input, threshold) per level plus leaf values; a row goes right when its
    (reordered) code is greater than the threshold."""

    order: list[np.ndarray]  # per input: code → rank (identity for ordered inputs)
    inputs: np.ndarray  # (trees, depth) int; not oblivious: (trees, 2**depth − 1) per node
    thresholds: np.ndarray  # as inputs
    leaves: np.ndarray  # (trees, 2**depth) float, already shrunk
    #: False: each node of a level has its own split (depth-wise trees, nodes numbered
    #: level by level: node 2**level − 1 + cell), for errors that depend on interactions
    oblivious: bool = True

    @property
    def depth(self) -> int:
        return int(self.leaves.shape[1]).bit_length() - 1 if self.leaves.ndim == 2 else 0

    @property
    def trees(self) -> int:
        return int(self.inputs.shape[0])

    def margin(self, codes: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The trees' summed correction to the base margin, per row; ``codes`` is a
        (rows × inputs) array or a list of one code array per input.

        Rows go through in cache-sized chunks; a split shared by several trees is compared
        once per chunk."""
        columns = list(codes.T) if isinstance(codes, np.ndarray) else codes
        n = len(columns[0]) if columns else 0
        out = np.zeros(n)
        if self.trees == 0 or n == 0:
            return out
        if not self.oblivious:
            return self._margin_by_node(columns, out)
        ranks = {int(j): self.order[j].astype(np.int16)[np.asarray(columns[j])]
                 for j in np.unique(self.inputs)}  # only the inputs some tree splits on
        splits = [list(zip(self.inputs[t].tolist(), self.thresholds[t].tolist(), strict=True))
                  for t in range(self.trees)]
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            bits: dict[tuple[int, int], np.ndarray] = {}
            leaf = np.empty(stop - start, dtype=np.uint8)
            total = out[start:stop]
            for t, tree in enumerate(splits):
                leaf[:] = 0
                for level, split in enumerate(tree):
                    bit = bits.get(split)
                    if bit is None:
                        j, cut = split
                        bit = bits[split] = (ranks[j][start:stop] > cut).view(np.uint8)
                    leaf |= bit << np.uint8(level)
                total += self.leaves[t].take(leaf)
        return out

    def _margin_by_node(self, columns: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        used = np.unique(self.inputs)
        where = np.zeros(len(self.order), dtype=np.int64)
        where[used] = np.arange(used.size)
        inputs = where[self.inputs]  # an input's column among the used ones
        n, depth = out.size, self.depth
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            ranks = np.column_stack([self.order[j].astype(np.int16)[
                np.asarray(columns[j][start:stop])] for j in used])
            rows = np.arange(stop - start)
            total = out[start:stop]
            for t in range(self.trees):
                cell = np.zeros(stop - start, dtype=np.int64)
                for level in range(depth):
                    node = (1 << level) - 1 + cell
                    cell |= (ranks[rows, inputs[t][node]] > self.thresholds[t][node]
                             ).astype(np.int64) << level
                total += self.leaves[t].take(cell)
        return out

    def predict(self, codes: np.ndarray | list[np.ndarray],
                base_margin: np.ndarray) -> np.ndarray:
        """P(label = 1) per row: the sigmoid of the base margin plus the trees."""
        return sigmoid(np.asarray(base_margin, dtype=float) + self.margin(codes))

    @classmethod
    def empty(cls, inputs: int, depth: int = 4) -> ObliviousBoosting:
        """No trees: the base margin unchanged."""
        return cls([np.zeros(1, dtype=np.int64)] * inputs, np.zeros((0, depth), np.int64),
                   np.zeros((0, depth), np.int64), np.zeros((0, 2 ** depth)))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "order": [[int(v) for v in o] for o in self.order],
            "inputs": self.inputs.tolist(),
            "thresholds": self.thresholds.tolist(),
            "leaves": base64.b64encode(self.leaves.astype("<f4").tobytes()).decode(),
        }
        if not self.oblivious:
            out["oblivious"] = False
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObliviousBoosting:
        inputs = np.asarray(d["inputs"], dtype=np.int64)
        oblivious = bool(d.get("oblivious", True))
        width = inputs.shape[1] if inputs.ndim == 2 and inputs.size else (4 if oblivious
                                                                           else 15)
        depth = width if oblivious else (width + 1).bit_length() - 1
        if not oblivious and width != 2 ** depth - 1:
            raise ValueError("a depth-wise tree needs 2**depth − 1 splits")
        raw = base64.b64decode(d["leaves"])
        if len(raw) != 4 * inputs.shape[0] * 2 ** depth:
            raise ValueError("leaves do not match the number and depth of the trees")
        leaves = np.frombuffer(raw, dtype="<f4").astype(float)
        return cls([np.asarray(o, dtype=np.int64) for o in d["order"]],
                   inputs.reshape(-1, width),
                   np.asarray(d["thresholds"], dtype=np.int64).reshape(-1, width),
                   leaves.reshape(-1, 2 ** depth), oblivious)

    @classmethod
    def fit(cls, codes: np.ndarray, sizes: list[int], base_margin: np.ndarray, y: np.ndarray,
            *, depth: int = 4, max_trees: int = 200, holdout: float = 0.25,
            seed: int = 0, on_tree: Callable[[], Any] | None = None,
            loss: str = "logistic", ordered: list[bool] | None = None,
            oblivious: bool = True, min_child: float = MIN_CHILD_HESSIAN,
            penalty: float = LEAF_PENALTY) -> ObliviousBoosting:
        """Fit on integer ``codes`` (rows × inputs, input ``j`` in ``[0, sizes[j])``),
        a base margin per row (log-odds) and 0/1 labels ``y``; ``on_tree`` is called after
        each round (a progress bar's update). With ``loss="squared"`` ``y`` is any number
        and the model's value is the base margin plus :meth:`margin` (least squares: the
        leaves fit the mean of ``y`` in each cell, as for a loss model of a regressor).
        ``ordered[j]`` keeps input ``j``'s codes in their own order (numeric bins: with many
        fine bins, an order by each bin's noisy mean residual would split on noise).
        ``oblivious=False`` grows depth-wise trees (each node its own split; see
        ``oblivious``); ``min_child`` is the least hessian (rows, for squared loss) a split
        leaves on either side; ``penalty`` the L2 penalty on a leaf's value."""
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        squared = loss == "squared"
        mean_loss = _squared if squared else _logloss
        codes = np.asarray(codes, dtype=np.int64)
        y = np.asarray(y, dtype=float)
        base = np.asarray(base_margin, dtype=float)
        n, k = codes.shape
        if not (len(sizes) == k and y.shape == (n,) and base.shape == (n,)):
            raise ValueError("codes, sizes, base_margin and y do not agree in shape")
        if not 1 <= depth <= 8:
            raise ValueError(f"depth must be between 1 and 8, got {depth}")
        rng = np.random.default_rng(seed)
        valid = rng.random(n) < holdout
        train = ~valid
        stop_early = bool(np.any(valid))  # without held-out rows: all ``max_trees`` trees
        # categorical or not, order every input's codes by the base model's mean residual
        # on the training rows: for an ordered input whose residual is monotone this keeps
        # the order, and for levels it groups the similar ones
        residual = y - (base if squared else sigmoid(base))
        order = []
        for j in range(k):
            if ordered is not None and ordered[j]:
                order.append(np.arange(sizes[j]))
                continue
            s = np.bincount(codes[train, j], weights=residual[train], minlength=sizes[j])
            c = np.bincount(codes[train, j], minlength=sizes[j])
            mean = s / np.maximum(c, 1.0)
            rank = np.empty(sizes[j], dtype=np.int64)
            rank[np.argsort(mean, kind="stable")] = np.arange(sizes[j])
            order.append(rank)
        ranks = np.column_stack([order[j][codes[:, j]] for j in range(k)])
        xt, yt, mt = ranks[train], y[train], base[train].copy()
        xv, yv, mv = ranks[valid], y[valid], base[valid].copy()
        inputs, thresholds, leaves = [], [], []
        # the bin index of each (row, input) among all inputs' bins, for the histograms
        binned = None if oblivious else xt + np.concatenate([[0], np.cumsum(sizes)])[:-1]
        best, best_trees = (mean_loss(yv, mv) if stop_early else 0.0), 0
        for _ in range(max_trees):
            if squared:
                g, h = mt - yt, np.ones_like(mt)
            else:
                p = sigmoid(mt)
                g, h = p - yt, p * (1.0 - p)
            tree = (_grow(xt, sizes, g, h, depth, min_child, penalty) if oblivious
                    else _grow_by_node(xt, sizes, g, h, depth, min_child, penalty, binned))
            if tree is None:
                break
            feats, cuts, leaf_t, value = tree
            inputs.append(feats)
            thresholds.append(cuts)
            leaves.append(value)
            mt += value[leaf_t]
            mv += value[_leaf(xv, feats, cuts) if oblivious else _leaf_by_node(xv, feats, cuts)]
            held_out = mean_loss(yv, mv) if stop_early else -float(len(leaves))
            if on_tree is not None:
                on_tree()
            if held_out < best - 1e-12:
                best, best_trees = held_out, len(leaves)
            elif len(leaves) - best_trees >= PATIENCE:
                break
        inputs, thresholds, leaves = (inputs[:best_trees], thresholds[:best_trees],
                                      leaves[:best_trees])
        width = depth if oblivious else 2 ** depth - 1
        return cls(order, np.asarray(inputs, dtype=np.int64).reshape(-1, width),
                   np.asarray(thresholds, dtype=np.int64).reshape(-1, width),
                   np.asarray(leaves, dtype=float).reshape(-1, 2 ** depth), oblivious)


def intercept(margin: np.ndarray, y: np.ndarray, iterations: int = 50) -> float:
    """The log-odds shift that makes the mean of sigmoid(margin + shift) equal the mean
    of ``y`` (labels, or probabilities: calibration in the large), on the grid of leaf
    values.

    Shrunk trees added to a calibrated base are unbiased in log-odds, not in probability:
    where most rows sit at high probabilities, symmetric corrections lower the mean
    (Jensen), so one Newton-solved shift per group restores the labels' mean.

    >>> round(intercept(np.zeros(4), np.array([1.0, 1.0, 1.0, 0.0])), 4)  # log(3)
    1.0986
    """
    m = np.asarray(margin, dtype=float)
    target = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6)) if m.size else 0.5
    shift = 0.0
    for _ in range(iterations):
        p = sigmoid(m + shift)
        slope = float((p * (1.0 - p)).sum())
        if slope <= 0:
            break
        step = float(np.clip((target * m.size - p.sum()) / slope, -1.0, 1.0))
        shift += step
        if abs(step) < 1e-10:
            break
    return float(np.round(shift / LEAF_STEP) * LEAF_STEP)


def _leaf(ranks: np.ndarray, feats: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    leaf = np.zeros(ranks.shape[0], dtype=np.int64)
    for level, (j, cut) in enumerate(zip(feats, cuts, strict=True)):
        leaf |= (ranks[:, j] > cut).astype(np.int64) << level
    return leaf


def _grow(ranks: np.ndarray, sizes: list[int], g: np.ndarray, h: np.ndarray,
          depth: int, min_child: float = MIN_CHILD_HESSIAN, penalty: float = LEAF_PENALTY
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """One oblivious tree by greedy Newton gain, level by level; None if no split helps.

    A level's histograms of every input come from one bincount over (row, input): the
    index of a row's bin is cell × Σsizes + offset of the input + its rank."""
    n = ranks.shape[0]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    binned = ranks + offsets[:-1]  # (rows, inputs): a bin index in [0, total)
    cell = np.zeros(n, dtype=np.int64)
    feats = np.zeros(depth, dtype=np.int64)
    cuts = np.zeros(depth, dtype=np.int64)
    gg = np.repeat(g, ranks.shape[1])
    hh = np.repeat(h, ranks.shape[1])
    for level in range(depth):
        cells = 1 << level
        index = (binned + (cell * total)[:, None]).ravel()
        gs = np.bincount(index, weights=gg, minlength=cells * total).reshape(cells, total)
        hs = np.bincount(index, weights=hh, minlength=cells * total).reshape(cells, total)
        best_gain, best = 0.0, None
        for j in range(len(sizes)):
            if sizes[j] < 2:
                continue
            gain, hl, ht = _cut_gains(gs[:, offsets[j]:offsets[j + 1]],
                                      hs[:, offsets[j]:offsets[j + 1]], penalty)
            gain = gain.sum(axis=0)
            # a cut that leaves (almost) nothing on one side overall only adds noise
            left = hl.sum(axis=0)
            gain[(left < min_child) | (ht.sum() - left < min_child)] = 0.0
            cut = int(np.argmax(gain))
            if gain[cut] > best_gain:
                best_gain, best = float(gain[cut]), (j, cut)
        if best is None:
            if level == 0:
                return None
            feats[level:], cuts[level:] = feats[level - 1], cuts[level - 1]
            break
        feats[level], cuts[level] = best
        cell |= (ranks[:, best[0]] > best[1]).astype(np.int64) << level
    leaf = _leaf(ranks, feats, cuts)
    gs = np.bincount(leaf, weights=g, minlength=1 << depth)
    hs = np.bincount(leaf, weights=h, minlength=1 << depth)
    value = np.round(-LEARNING_RATE * gs / (hs + penalty) / LEAF_STEP) * LEAF_STEP
    return feats, cuts, leaf, value


def _leaf_by_node(ranks: np.ndarray, feats: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Leaf per row of a depth-wise tree (node ``2**level − 1 + cell`` splits a level's
    cell; the leaf's bits are the turns taken, level 0 lowest, as in :func:`_leaf`)."""
    depth = (feats.size + 1).bit_length() - 1
    rows = np.arange(ranks.shape[0])
    cell = np.zeros(ranks.shape[0], dtype=np.int64)
    for level in range(depth):
        node = (1 << level) - 1 + cell
        cell |= (ranks[rows, feats[node]] > cuts[node]).astype(np.int64) << level
    return cell


def _grow_by_node(ranks: np.ndarray, sizes: list[int], g: np.ndarray, h: np.ndarray,
                  depth: int, min_child: float, penalty: float,
                  binned: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """One depth-wise tree by greedy Newton gain: each cell of a level takes its own best
    split (a cell with none sends every row left: threshold past its ranks); None if no
    cell of the first level can split. Histograms as in :func:`_grow`."""
    n = ranks.shape[0]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    if binned is None:
        binned = ranks + offsets[:-1]
    cell = np.zeros(n, dtype=np.int64)
    nodes = 2 ** depth - 1
    feats = np.zeros(nodes, dtype=np.int64)
    cuts = np.full(nodes, np.iinfo(np.int16).max, dtype=np.int64)
    unit = bool(np.all(h == 1.0))  # squared loss: the hessians are row counts
    gg = np.repeat(g, ranks.shape[1])
    hh = None if unit else np.repeat(h, ranks.shape[1])
    rows = np.arange(n)
    for level in range(depth):
        cells = 1 << level
        index = (binned + (cell * total)[:, None]).ravel()
        gs = np.bincount(index, weights=gg, minlength=cells * total).reshape(cells, total)
        hs = (np.bincount(index, minlength=cells * total) if unit
              else np.bincount(index, weights=hh, minlength=cells * total)
              ).reshape(cells, total).astype(float)
        best_gain = np.zeros(cells)
        best_j = np.full(cells, -1)
        best_cut = np.zeros(cells, dtype=np.int64)
        for j in range(len(sizes)):
            if sizes[j] < 2:
                continue
            gain, hl, ht = _cut_gains(gs[:, offsets[j]:offsets[j + 1]],
                                      hs[:, offsets[j]:offsets[j + 1]], penalty)
            hr = ht - hl
            gain[(hl < min_child) | (hr < min_child)] = 0.0
            cut = np.argmax(gain, axis=1)
            value = gain[np.arange(cells), cut]
            better = value > best_gain
            best_gain[better], best_j[better], best_cut[better] = (value[better], j,
                                                                   cut[better])
        if level == 0 and best_j[0] < 0:
            return None
        split = best_j >= 0
        at = (1 << level) - 1 + np.arange(cells)
        feats[at[split]], cuts[at[split]] = best_j[split], best_cut[split]
        node = (1 << level) - 1 + cell
        cell |= (ranks[rows, feats[node]] > cuts[node]).astype(np.int64) << level
    gs = np.bincount(cell, weights=g, minlength=1 << depth)
    hs = np.bincount(cell, weights=h, minlength=1 << depth)
    value = np.round(-LEARNING_RATE * gs / (hs + penalty) / LEAF_STEP) * LEAF_STEP
    return feats, cuts, cell, value


def _cut_gains(g: np.ndarray, h: np.ndarray,
               penalty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gain of each cut between a feature's consecutive bins, per cell (rows: cells,
    columns: cuts), from the gradient and hessian sums ``g``, ``h`` of each cell's bins;
    with the hessian sums left of each cut and in all."""
    gl, hl = np.cumsum(g, axis=1)[:, :-1], np.cumsum(h, axis=1)[:, :-1]
    gt, ht = g.sum(axis=1, keepdims=True), h.sum(axis=1, keepdims=True)
    gr, hr = gt - gl, ht - hl
    gain = gl ** 2 / (hl + penalty) + gr ** 2 / (hr + penalty) - gt ** 2 / (ht + penalty)
    return gain, hl, ht
