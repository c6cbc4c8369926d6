"""A batched, projected L-BFGS in torch: B independent box-constrained problems, one evaluation per step.

``torch.optim.LBFGS`` has no bounds and treats a batch as one big problem (one shared history and line
search), so images of a batch would influence each other. Here every sample has its own curvature history,
step length and acceptance test, while the expensive part — the network forward/backward — runs once for the
whole batch per iteration. It is the "fast mode" of texture synthesis; the faithful reference is scipy's
L-BFGS-B (see :mod:`texturebias.texture.synthesis`).

Per iteration and sample:

1. Projected gradient: components pinned at a bound with the gradient pointing outwards are frozen
   (the active set of L-BFGS-B, in its simplest form).
2. Direction from the two-loop recursion over the last ``history`` accepted (s, y) pairs, initial Hessian
   γ·I with γ = sᵀy / yᵀy; without history, steepest descent of length 1 (L-BFGS-B's first step), growing ×4
   per accepted step until a curvature pair exists (the extrapolation of a line search).
3. x⁺ = clamp(x + t·d, lo, hi) with t = 1.
4. Accept when f(x⁺) ≤ f(x) + 1e-4·gᵀ(x⁺ − x) (Armijo on the projected step); otherwise keep x and shrink t by
   quadratic interpolation (to 0.1–0.5 of the previous t) for the next try; after three rejections in a row
   the sample's history is also cleared, while t keeps shrinking until a step is accepted.

A rejected step costs one evaluation, like one extra line-search trial in L-BFGS-B. Samples whose (s, y)
pair is rejected store a null pair (ρ = 0), which the two-loop recursion skips exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class BatchedLBFGSResult:
    """Outcome of :func:`batched_lbfgs`.

    Attributes:
        x: Final iterates (same shape as ``x0``).
        loss: Final loss per sample, shape (B,).
        history: Loss per sample after each iteration (list of (B,) CPU tensors; entry 0 is the start).
        evaluations: Number of batched objective evaluations.
    """

    x: torch.Tensor
    loss: torch.Tensor
    history: list[torch.Tensor] = field(default_factory=list)
    evaluations: int = 0


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=1)


def batched_lbfgs(
    objective: Objective,
    x0: torch.Tensor,
    lower: torch.Tensor | float,
    upper: torch.Tensor | float,
    *,
    max_iter: int,
    history_size: int = 20,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> BatchedLBFGSResult:
    """Minimise B independent box-constrained objectives with one batched evaluation per iteration.

    Args:
        objective: Maps x (B, ...) to (loss (B,), gradient like x). Samples must be independent.
        x0: Start (B, ...); clamped into the box first.
        lower: Lower bound, broadcastable to ``x0`` (e.g. (B, 1, 1, 1) per-sample scalars).
        upper: Upper bound, broadcastable to ``x0``.
        max_iter: Iterations (= objective evaluations after the first).
        history_size: Number of (s, y) pairs kept per sample (L-BFGS "m").
        callback: Called as ``callback(iteration, loss)`` after every iteration.

    Returns:
        A :class:`BatchedLBFGSResult`.
    """
    shape = x0.shape
    bsz = shape[0]
    lo = torch.as_tensor(lower, dtype=x0.dtype, device=x0.device).expand(shape).reshape(bsz, -1)
    hi = torch.as_tensor(upper, dtype=x0.dtype, device=x0.device).expand(shape).reshape(bsz, -1)
    x = torch.minimum(torch.maximum(x0.detach().reshape(bsz, -1), lo), hi).clone()
    dim = x.shape[1]

    def evaluate(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, g = objective(flat.reshape(shape))
        return f.detach().to(x.dtype), g.detach().reshape(bsz, -1).to(x.dtype)

    f, g = evaluate(x)
    evaluations = 1
    hist = [f.cpu()]
    s_hist = torch.zeros(history_size, bsz, dim, dtype=x.dtype, device=x.device)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(history_size, bsz, dtype=x.dtype, device=x.device)
    gamma = torch.zeros(bsz, dtype=x.dtype, device=x.device)  # 0 = no curvature information yet
    step = torch.ones(bsz, dtype=x.dtype, device=x.device)
    rejections = torch.zeros(bsz, dtype=torch.long, device=x.device)
    head = 0  # ring-buffer slot of the next pair; all samples share it (null pairs keep them aligned)
    stored = 0

    for it in range(1, max_iter + 1):
        active = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        pg = g.masked_fill(active, 0.0)
        # Two-loop recursion, newest pair first.
        q = -pg
        alphas = []
        order = [(head - 1 - k) % history_size for k in range(stored)]
        for slot in order:
            a = rho[slot] * _dot(s_hist[slot], q)
            q = q - a[:, None] * y_hist[slot]
            alphas.append(a)
        has_curv = gamma > 0
        # Without curvature information: a step of length 1 along -g (L-BFGS-B's first step, 1/‖g‖₂).
        first_step = 1.0 / pg.norm(dim=1).clamp_min(1e-30)
        r = q * torch.where(has_curv, gamma, first_step)[:, None]
        for slot, a in zip(reversed(order), reversed(alphas), strict=True):
            b = rho[slot] * _dot(y_hist[slot], r)
            r = r + s_hist[slot] * (a - b)[:, None]
        d = r.masked_fill(active, 0.0)
        # Not a descent direction (can happen after projection): fall back to steepest descent.
        bad = _dot(d, pg) >= 0
        if bad.any():
            d = torch.where(bad[:, None], -pg * first_step[:, None], d)
        x_new = torch.minimum(torch.maximum(x + step[:, None] * d, lo), hi)
        f_new, g_new = evaluate(x_new)
        evaluations += 1
        s = x_new - x
        accept = torch.isfinite(f_new) & (f_new <= f + 1e-4 * _dot(g, s))
        y = g_new - g
        sy = _dot(s, y)
        good_pair = accept & (sy > 1e-10 * _dot(y, y).clamp_min(1e-30))
        s_hist[head] = torch.where(good_pair[:, None], s, torch.zeros_like(s))
        y_hist[head] = torch.where(good_pair[:, None], y, torch.zeros_like(y))
        rho[head] = torch.where(good_pair, 1.0 / sy.where(good_pair, torch.ones_like(sy)), torch.zeros_like(sy))
        gamma = torch.where(good_pair, sy / _dot(y, y).clamp_min(1e-30), gamma)
        head = (head + 1) % history_size
        stored = min(stored + 1, history_size)

        f_old, g_old = f, g
        x = torch.where(accept[:, None], x_new, x)
        f = torch.where(accept, f_new, f)
        g = torch.where(accept[:, None], g_new, g)
        rejections = torch.where(accept, torch.zeros_like(rejections), rejections + 1)
        # Backtracking by quadratic interpolation of f along the step, as in classic line searches:
        # the minimiser of the parabola through f(x), gᵀs and f(x⁺), kept within [0.1, 0.5] of the last step.
        gs = _dot(g_old, s)
        curvature = f_new - f_old - gs
        frac = torch.where(
            torch.isfinite(f_new) & (curvature > 0), -gs / (2.0 * curvature.clamp_min(1e-30)), torch.full_like(gs, 0.1)
        ).clamp(0.1, 0.5)
        # After an accepted step: t = 1 for quasi-Newton steps; steepest-descent steps (no curvature pair yet)
        # grow ×4, the extrapolation a line search would do, so a badly scaled start is not stuck at tiny steps.
        grown = torch.where(gamma > 0, torch.ones_like(step), torch.where(step < 1, torch.ones_like(step), step * 4))
        step = torch.where(accept, grown, step * frac)
        # Three failures in a row: the quadratic model is stale; forget the history (the step keeps shrinking).
        reset = rejections >= 3
        if reset.any():
            rho[:, reset] = 0.0
            gamma = gamma.masked_fill(reset, 0.0)
            rejections = rejections.masked_fill(reset, 0)
        hist.append(f.cpu())
        if callback is not None:
            callback(it, f)
    return BatchedLBFGSResult(x=x.reshape(shape), loss=f, history=hist, evaluations=evaluations)
