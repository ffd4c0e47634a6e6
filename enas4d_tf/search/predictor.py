"""A small accuracy predictor that ranks candidate architectures before they are measured.

A two-layer MLP in numpy (no TensorFlow: it is retrained from scratch every generation on a
few hundred rows, which numpy does in well under a second and without tracing). Inputs are
`space.encode(arch)` plus a few cost features; the target is the measured validation accuracy.
Inputs and targets are standardised; training is full-batch Adam with weight decay, seeded,
so the same rows give the same predictor.
"""

from __future__ import annotations

import numpy as np

from enas4d_tf.search.blas import one_blas_thread


class AccuracyPredictor:
    """MLP regressor `features -> accuracy`.

    Args:
      hidden: hidden units.
      steps: full-batch Adam steps.
      learning_rate: Adam step size.
      weight_decay: L2 penalty on the weights.
      seed: initialisation seed.

    Example:
      >>> p = AccuracyPredictor(seed=0).fit(x_train, y_train)
      >>> order = np.argsort(-p.predict(x_candidates))
    """

    def __init__(
        self,
        hidden: int = 64,
        steps: int = 400,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-2,
        seed: int = 0,
    ):
        if hidden < 1 or steps < 1 or learning_rate <= 0 or weight_decay < 0:
            raise ValueError("predictor needs hidden >= 1, steps >= 1, learning_rate > 0")
        self.hidden = int(hidden)
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.seed = int(seed)
        self._params = None

    def fit(self, x, y) -> AccuracyPredictor:
        """Trains on rows `x` `(n, d)` and targets `y` `(n,)`; returns self.

        Raises:
          ValueError: no rows, or `x` and `y` differ in length.
        """
        with one_blas_thread():  # small matrices: see `enas4d_tf.search.blas`
            return self._fit(x, y)

    def _fit(self, x, y) -> AccuracyPredictor:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(f"need (n, d) rows and n targets, got {x.shape} and {y.shape}")
        self._x_mean = x.mean(axis=0)
        self._x_std = np.where(x.std(axis=0) > 1e-8, x.std(axis=0), 1.0)
        self._y_mean = float(y.mean())
        self._y_std = float(y.std()) if y.std() > 1e-8 else 1.0
        xs = (x - self._x_mean) / self._x_std
        ys = (y - self._y_mean) / self._y_std
        rng = np.random.default_rng(self.seed)
        d, h = x.shape[1], self.hidden
        params = [
            rng.normal(0.0, np.sqrt(2.0 / d), (d, h)),
            np.zeros(h),
            rng.normal(0.0, np.sqrt(1.0 / h), (h, 1)),
            np.zeros(1),
        ]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        b1, b2, eps = 0.9, 0.999, 1e-8
        n = xs.shape[0]
        for step in range(1, self.steps + 1):
            w1, c1, w2, c2 = params
            pre = xs @ w1 + c1
            act = np.maximum(pre, 0.0)
            out = (act @ w2 + c2)[:, 0]
            err = (out - ys)[:, None] * (2.0 / n)
            g_w2 = act.T @ err + self.weight_decay * w2
            g_c2 = err.sum(axis=0)
            g_act = (err @ w2.T) * (pre > 0)
            g_w1 = xs.T @ g_act + self.weight_decay * w1
            g_c1 = g_act.sum(axis=0)
            for i, g in enumerate((g_w1, g_c1, g_w2, g_c2)):
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                m_hat = m[i] / (1 - b1**step)
                v_hat = v[i] / (1 - b2**step)
                params[i] = params[i] - self.learning_rate * m_hat / (np.sqrt(v_hat) + eps)
        self._params = params
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted accuracies `(n,)` for rows `x` `(n, d)`.

        Raises:
          RuntimeError: called before `fit`.
        """
        if self._params is None:
            raise RuntimeError("AccuracyPredictor.predict called before fit")
        xs = (np.asarray(x, np.float64) - self._x_mean) / self._x_std
        w1, c1, w2, c2 = self._params
        out = (np.maximum(xs @ w1 + c1, 0.0) @ w2 + c2)[:, 0]
        return out * self._y_std + self._y_mean


class RidgePredictor:
    """Ridge regression `features -> accuracy` in closed form (numpy, no iterations).

    Suits the few dozen to few hundred rows a search has: with one-hot encodings of a few
    hundred columns it is the least-squares fit shrunk toward "every gene adds nothing",
    and `alpha` (chosen by held-out rank correlation, `enas4d_tf.search.selection`) sets how
    hard. Inputs are standardised like the MLP's; the intercept is not penalised. Solved
    through the SVD of the centred rows, so it holds for more columns than rows.

    Args:
      alpha: the L2 penalty on the standardised weights (> 0).

    Example:
      >>> p = RidgePredictor(alpha=10.0).fit(x_train, y_train)
      >>> order = np.argsort(-p.predict(x_candidates))
    """

    def __init__(self, alpha: float = 10.0):
        if not alpha > 0:
            raise ValueError(f"ridge alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self._weights = None

    def fit(self, x, y) -> RidgePredictor:
        """Fits rows `x` `(n, d)` to targets `y` `(n,)`; returns self.

        Raises:
          ValueError: no rows, or `x` and `y` differ in length.
        """
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(f"need (n, d) rows and n targets, got {x.shape} and {y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("ridge rows and targets must be finite")
        self._x_mean = x.mean(axis=0)
        std = x.std(axis=0)
        self._x_std = np.where(std > 1e-8, std, 1.0)
        self._y_mean = float(y.mean())
        xs = (x - self._x_mean) / self._x_std
        centred = y - self._y_mean
        try:
            u, s, vt = np.linalg.svd(xs, full_matrices=False)
        except np.linalg.LinAlgError:
            # LAPACK's divide-and-conquer SVD fails to converge on some rank-deficient rows
            # (it stopped a search once, on one budget's rows); the same solution then
            # comes from the normal equations, which alpha > 0 keeps positive definite.
            self._weights = _ridge_by_solve(xs, centred, self.alpha)
            return self
        # w = V diag(s / (s^2 + alpha)) U^T y: the ridge solution for any n and d.
        self._weights = vt.T @ ((s / (s * s + self.alpha)) * (u.T @ centred))
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted accuracies `(n,)` for rows `x` `(n, d)`.

        Raises:
          RuntimeError: called before `fit`.
        """
        if self._weights is None:
            raise RuntimeError("RidgePredictor.predict called before fit")
        xs = (np.asarray(x, np.float64) - self._x_mean) / self._x_std
        return xs @ self._weights + self._y_mean


def _ridge_by_solve(xs: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge weights `(X^T X + alpha I)^-1 X^T y`, through the smaller of the two
    systems (`X^T (X X^T + alpha I)^-1 y` when there are fewer rows than columns)."""
    n, d = xs.shape
    if n >= d:
        return np.linalg.solve(xs.T @ xs + alpha * np.eye(d), xs.T @ y)
    return xs.T @ np.linalg.solve(xs @ xs.T + alpha * np.eye(n), y)


class GroupedPredictor:
    """One model per group of rows (a budget's, an exit's), and a model of all rows for
    groups with fewer than `min_rows` (or unseen in training).

    The search ranks candidates against others of the same group only (one budget at a
    time), so a model per group spends nothing on how the groups' levels differ: on the
    demo's measured candidates, one MLP per budget ranked held-out candidates at tau 0.602
    against 0.536 for one MLP over all budgets (BUILD_NOTES.md "A predictor per budget").

    Args:
      make: makes an unfitted model (`.fit(x, y)` returning it, `.predict(x)`).
      group_of: rows `(n, d)` -> their groups `(n,)` (`Objective.predictor_groups`).
      min_rows: rows a group needs for a model of its own.
    """

    def __init__(self, make, group_of, min_rows: int = 8):
        self.make = make
        self.group_of = group_of
        self.min_rows = int(min_rows)
        self._pooled = None
        self._models: dict = {}

    def fit(self, x, y) -> GroupedPredictor:
        """Fits the pooled model and one per group with enough rows; returns self."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64).reshape(-1)
        self._pooled = self.make().fit(x, y)
        groups = self.group_of(x)
        self._models = {}
        for g in np.unique(groups):
            rows = groups == g
            if rows.sum() >= self.min_rows:
                self._models[g] = self.make().fit(x[rows], y[rows])
        return self

    def predict(self, x) -> np.ndarray:
        """Each row predicted by its group's model (the pooled one where there is none).

        Raises:
          RuntimeError: called before `fit`.
        """
        if self._pooled is None:
            raise RuntimeError("GroupedPredictor.predict called before fit")
        x = np.asarray(x, np.float64)
        if not len(x):
            return np.zeros(0)
        groups = self.group_of(x)
        out = np.empty(len(x))
        for g in np.unique(groups):
            rows = groups == g
            out[rows] = self._models.get(g, self._pooled).predict(x[rows])
        return out


class ColumnPredictor:
    """A model fitted on some columns of the rows only.

    Args:
      model: an unfitted model (`.fit(x, y)` returning it, `.predict(x)`).
      columns: the column indices it sees.
    """

    def __init__(self, model, columns):
        self.model = model
        self.columns = np.asarray(columns, np.int64)

    def fit(self, x, y) -> ColumnPredictor:
        self.model = self.model.fit(np.asarray(x)[:, self.columns], y)
        return self

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x)
        if not len(x):
            return np.zeros(0)
        return self.model.predict(x[:, self.columns])


def kendall_tau(x, y) -> float:
    """Kendall's rank correlation tau-b of two equally long sequences (ties handled).

    `tau_b = (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))`, over the
    `n0 = n (n - 1) / 2` pairs; a pair tied in `x` (in `y`) counts in `ties_x` (`ties_y`) and
    neither concordant nor discordant. Equals `scipy.stats.kendalltau(x, y).statistic`.
    O(n^2) time, in row blocks so memory stays O(n) per block.

    Returns:
      tau in [-1, 1], or NaN when fewer than 2 values or either sequence is constant.

    Raises:
      ValueError: the sequences differ in length or are not 1-D.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"kendall_tau needs two 1-D sequences of one length, got {x.shape}, {y.shape}"
        )
    n = x.size
    if n < 2:
        return float("nan")
    signed = ties_x = ties_y = 0
    for start in range(0, n - 1, 256):
        rows = np.arange(start, min(start + 256, n - 1))
        dx = np.sign(x[rows, None] - x[None, :])
        dy = np.sign(y[rows, None] - y[None, :])
        upper = np.arange(n)[None, :] > rows[:, None]  # each pair once
        signed += int(np.sum((dx * dy)[upper]))
        ties_x += int(np.sum((dx == 0)[upper]))
        ties_y += int(np.sum((dy == 0)[upper]))
    pairs = n * (n - 1) // 2
    denominator = np.sqrt(float(pairs - ties_x) * float(pairs - ties_y))
    return float(signed / denominator) if denominator > 0 else float("nan")
