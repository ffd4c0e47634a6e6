"""A small accuracy predictor that ranks candidate architectures before they are measured.

A two-layer MLP in numpy (no TensorFlow: it is retrained from scratch every generation on a
few hundred rows, which numpy does in well under a second and without tracing). Inputs are
`space.encode(arch)` plus a few cost features; the target is the measured validation accuracy.
Inputs and targets are standardised; training is full-batch Adam with weight decay, seeded,
so the same rows give the same predictor.
"""

from __future__ import annotations

import numpy as np


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
