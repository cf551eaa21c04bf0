"""From slot scores to an allocation: the (modality, block) slots worth most per unit of cost that
fit the budget, block 0 of every live modality always, nothing for a dead one.

`select_slots` is the deployed choice. `straight_through_gates` is its training counterpart: in
the forward pass the gates are exactly select_slots' choice (0 or 1) on the same scores; in the
backward pass they carry the gradient of a soft relaxation, a sigmoid of each slot's log value
per cost around the selection threshold (the boundary between the last slot taken and the
first left out). Greedy filling by value per cost is what a fractional knapsack does; the exact
0/1 knapsack is not worth solving for 24 slots whose values are themselves estimates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..model.allocation import Allocation
from .costs import CostTable

FILL_TOLERANCE = 1e-9  # relative: a budget filled exactly must not lose its last slot to rounding


def cost_matrix(table: CostTable, modalities: Sequence[str]) -> np.ndarray:
    """(len(modalities), layers) costs of the slots, in the table's unit."""
    missing = [name for name in modalities if name not in table.block]
    if missing:
        raise ValueError(f"the cost table has no blocks for {missing}")
    lengths = {len(table.block[name]) for name in modalities}
    if len(lengths) != 1:
        raise ValueError(f"modalities have different block counts in the cost table: {lengths}")
    return np.array([table.block[name] for name in modalities], dtype=np.float64)


def live_mask(live: Sequence[str], modalities: Sequence[str]) -> np.ndarray:
    unknown = sorted(set(live) - set(modalities))
    if unknown:
        raise ValueError(f"live modalities {unknown} are not among {list(modalities)}")
    return np.array([name in live for name in modalities])


def greedy_fill(priority: np.ndarray, costs: np.ndarray, budget: float,
                live: np.ndarray) -> np.ndarray:
    """Bool (modalities, layers) of the chosen slots: block 0 of each live modality, then the
    other live slots by descending priority (ties: earlier modality, then earlier block) as
    long as each still fits the budget; a slot that does not fit is passed over for cheaper
    ones further down."""
    chosen = np.zeros(costs.shape, dtype=bool)
    chosen[live, 0] = True
    spent = float(costs[live, 0].sum())
    limit = budget + FILL_TOLERANCE * max(1.0, abs(budget))
    candidates = np.zeros(costs.shape, dtype=bool)
    candidates[live, 1:] = True
    rows, cols = np.nonzero(candidates)
    # lexsort sorts by its last key first: priority descending, then row, then column.
    for k in np.lexsort((cols, rows, -priority[rows, cols])):
        cost = costs[rows[k], cols[k]]
        if spent + cost <= limit:
            chosen[rows[k], cols[k]] = True
            spent += cost
    return chosen


def log_priority(log_values: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """log(value / cost); a free slot comes first whatever its value."""
    with np.errstate(divide="ignore"):
        return np.where(costs > 0, log_values - np.log(np.where(costs > 0, costs, 1.0)), np.inf)


def as_allocation(chosen: np.ndarray, modalities: Sequence[str]) -> Allocation:
    return {name: tuple(int(i) for i in np.flatnonzero(row))
            for name, row in zip(modalities, chosen, strict=True) if row[0]}


def select_slots(scores: np.ndarray, table: CostTable, budget: float, live: Sequence[str],
                 modalities: Sequence[str]) -> Allocation:
    """scores (len(modalities), layers): non-negative value of every (modality, block) slot;
    budget in the table's unit for the blocks only. Returns modality -> sorted block indices
    for the live modalities (block 0 even when it alone exceeds the budget)."""
    scores = np.asarray(scores, dtype=np.float64)
    costs = cost_matrix(table, modalities)
    if scores.shape != costs.shape:
        raise ValueError(f"scores of shape {scores.shape}, expected {costs.shape} "
                         "(modalities, layers)")
    if not np.isfinite(scores).all() or (scores < 0).any():
        raise ValueError("slot scores must be finite and non-negative")
    budget = float(budget)
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"budget must be a finite non-negative cost, got {budget}")
    with np.errstate(divide="ignore"):
        priority = log_priority(np.log(scores), costs)
    return as_allocation(greedy_fill(priority, costs, budget, live_mask(live, modalities)),
                         modalities)


def straight_through_gates(
    log_values: torch.Tensor, table: CostTable, budgets: torch.Tensor, live: torch.Tensor,
    modalities: Sequence[str], temperature: float = 1.0,
) -> Mapping[str, torch.Tensor]:
    """Differentiable gates for model(..., gates=...), modality -> (B, layers).

    log_values (B, modalities, layers): log of each slot's value (the controller's logits, plus
    Gumbel noise in training for Gumbel top-k sampling); budgets (B,) block budgets in the
    table's unit; live (B, modalities) bool. Forward: exactly
    select_slots(exp(log_values[b]), ...) as 0/1. Backward: the gradient of
    sigmoid((log value - log cost - threshold) / temperature) for the slots the budget decides
    (block 0 and dead modalities are fixed, so they get none)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    costs = cost_matrix(table, modalities)
    if log_values.shape[1:] != costs.shape:
        raise ValueError(f"log values of shape {tuple(log_values.shape)}, expected "
                         f"(B, {costs.shape[0]}, {costs.shape[1]})")
    priority = log_priority(log_values.detach().double().cpu().numpy(), costs)
    live_np = live.cpu().numpy().astype(bool)
    hard = np.zeros(priority.shape, dtype=np.float32)
    threshold = np.zeros(len(priority), dtype=np.float64)
    for b in range(len(priority)):
        chosen = greedy_fill(priority[b], costs, float(budgets[b]), live_np[b])
        hard[b] = chosen
        threshold[b] = selection_threshold(priority[b], chosen, live_np[b])
    decided = np.zeros(priority.shape, dtype=bool)
    decided[:, :, 1:] = live_np[:, :, None]
    finite_cost = np.where(costs > 0, np.log(np.where(costs > 0, costs, 1.0)), -1e3)
    device = log_values.device
    soft = torch.sigmoid(
        (log_values - torch.as_tensor(finite_cost, dtype=log_values.dtype, device=device)
         - torch.as_tensor(threshold, dtype=log_values.dtype, device=device).view(-1, 1, 1))
        / temperature
    )
    soft = soft * torch.as_tensor(decided, device=device)
    gates = torch.as_tensor(hard, dtype=log_values.dtype, device=device) + (soft - soft.detach())
    return {name: gates[:, m] for m, name in enumerate(modalities)}


def selection_threshold(priority: np.ndarray, chosen: np.ndarray, live: np.ndarray) -> float:
    """The log value per cost at which a slot changes from left out to taken: midway between
    the lowest taken and the highest left-out optional slot (one unit beyond when all or none
    of them were taken)."""
    optional = np.zeros(priority.shape, dtype=bool)
    optional[live, 1:] = True
    finite = optional & np.isfinite(priority)
    taken, left = priority[finite & chosen], priority[finite & ~chosen]
    if len(taken) and len(left):
        return float(0.5 * (taken.min() + left.max()))
    if len(taken):
        return float(taken.min() - 1.0)
    if len(left):
        return float(left.max() + 1.0)
    return 0.0
