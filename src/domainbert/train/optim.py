"""Optimisation pieces shared by pretraining and fine-tuning: BERT's weight-decay groups, the
learning-rate schedule as a pure function, and LAMB for large-batch pretraining.

* Weight decay 0.01 on every weight matrix and embedding, none on LayerNorm weights or biases
  (google-research/bert ``optimization.py`` excludes "LayerNorm" and "bias").
* ``get_lr``: linear warmup to the peak, then linear decay to zero at the last step (BERT; the
  PubMedBERT recipe warms up over 10% of the steps). With ``decay`` below 1 the rate holds at its
  peak and decays only over that last share of the steps (a trapezoid, "warmup-stable-decay"): a
  short run keeps its full rate while it leaves the unigram plateau and still ends annealed.
  Warmup is a share of the steps when it is a float below 1 (``0.1``), a number of steps when it
  is an integer (``500``); a float of 1 or more (``1.0``: one step, or all of them?) is refused.
* ``Lamb``: layer-wise adaptive moments (You et al. 2020, "Large Batch Optimization for Deep
  Learning: Training BERT in 76 minutes") as NVIDIA's BERT recipe runs it (apex ``FusedLAMB``, for
  batches of 8k-64k): gradients pre-normalised by their global norm when it exceeds
  ``max_grad_norm``, a bias-corrected Adam update with the weight decay added to it, rescaled per
  tensor by the trust ratio ||w|| / ||update|| in the groups that have weight decay (LayerNorm
  weights and biases, in the no-decay group, take the plain Adam step). The step queues its work on
  the device without reading anything back to the host (no per-tensor synchronisation on a GPU).
  Checked step for step against timm's ``Lamb`` (tests/test_pretrain.py).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float = 0.01) -> list[dict[str, Any]]:
    """Two groups: decayed weights (matrices, embeddings) and undecayed (LayerNorm, biases)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_steps(warmup: float | int, total_steps: int) -> int:
    """``warmup`` as a float below 1 is a share of ``total_steps``; as an integer, a number of steps.

    A float of 1 or more is ambiguous (is ``1.0`` one step or 100%?) and raises ValueError.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or warmup < 0:
        raise ValueError(f"warmup {warmup!r} must be a share below 1 (0.1 = 10% of the steps) or a whole number "
                         "of steps (500)")
    if isinstance(warmup, float):
        if warmup >= 1:
            if warmup.is_integer():
                raise ValueError(f"warmup {warmup} is ambiguous: write {int(warmup)} for {int(warmup)} step(s), or a "
                                 "share below 1 (0.1 = 10% of the steps; 100% is not a warmup)")
            raise ValueError(f"warmup {warmup} is neither a share below 1 nor a whole number of steps")
        return int(round(warmup * total_steps))
    return int(warmup)


def get_lr(step: int, total_steps: int, peak: float, warmup: float = 0.1, decay: float = 1.0) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warmup, then (after a constant
    stretch when ``decay`` < 1) linear decay to 0 over the last ``decay`` share of the steps."""
    n_warm = warmup_steps(warmup, total_steps)
    if step < n_warm:
        return peak * (step + 1) / n_warm
    remaining = max(1, total_steps - n_warm)
    if decay < 1.0:
        remaining = min(remaining, max(1, int(round(decay * total_steps))))
    return peak * min(1.0, max(0.0, (total_steps - step) / remaining))


class Lamb(torch.optim.Optimizer):
    """NVIDIA's LAMB (apex FusedLAMB): global gradient pre-normalisation, Adam moments, and a
    per-tensor trust ratio where the group has weight decay."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, max_grad_norm: float | None = 1.0) -> None:
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB hyper-parameters lr={lr}, betas={betas}, eps={eps}")
        if max_grad_norm is not None and max_grad_norm <= 0:
            raise ValueError(f"LAMB max_grad_norm must be positive (or None: no pre-normalisation), "
                             f"got {max_grad_norm}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return loss
        scale = None  # the global norm over max_grad_norm, at least 1: a 0-d tensor, never read on the host
        if self.max_grad_norm is not None:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            scale = (norm / self.max_grad_norm).clamp(min=1.0)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if scale is None else p.grad / scale
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
                update = (m / (1 - beta1 ** state["step"])).div_(denom)
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                    w_norm, u_norm = p.norm(), update.norm()
                    # trust ratio ||w|| / ||u||, 1 where either norm is zero (a fresh zero-init tensor)
                    trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update.mul_(trust)
                p.sub_(update, alpha=group["lr"])
        return loss
