"""From the controller's outputs to an allocation: which live modalities run (`run_mask`: all of
them under ADMN's strict rule, those whose use logit is positive when the controller may switch
a live sensor off), then the (modality, block) slots worth most per unit of cost that fit the
budget, block 0 of every modality that runs always, nothing for one that does not (dead or
switched off: its share of the budget goes to the others).

`select_slots` is the deployed choice. `straight_through_gates` is its training counterpart: in
the forward pass the gates are exactly select_slots' choice (0 or 1) on the same scores; in the
backward pass they carry the gradient of a soft relaxation, a sigmoid of each slot's log value
per cost around the selection threshold (the boundary between the last slot taken and the
first left out). `straight_through_use` does the same for the use decision: run_mask in the
forward pass, a sigmoid of the (noisy) use logit in the backward pass. Greedy filling by value
per cost is what a fractional knapsack does; the exact 0/1 knapsack is not worth solving for 24
slots whose values are themselves estimates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from adaptive_fusion.model.allocation import Allocation
from adaptive_fusion.policies.costs import CostTable

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


def modality_mask(names: Sequence[str], modalities: Sequence[str]) -> np.ndarray:
    unknown = sorted(set(names) - set(modalities))
    if unknown:
        raise ValueError(f"modalities {unknown} are not among {list(modalities)}")
    return np.array([name in names for name in modalities])


def run_mask(use_logits: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Which modalities run, bool (B, modalities) from use logits and live flags of that shape:
    the live ones whose logit is positive; a sample with live sensors but none chosen runs the
    live one of highest logit, since with every sensor off there is nothing to detect from."""
    run = live & (use_logits > 0)
    idle = live.any(axis=1) & ~run.any(axis=1)
    if idle.any():
        best = np.argmax(np.where(live, use_logits, -np.inf), axis=1)
        run[idle, best[idle]] = True
    return run


def modalities_to_run(use_logits: np.ndarray | None, live: Sequence[str],
                      modalities: Sequence[str]) -> tuple[str, ...]:
    """One frame's run_mask by name; without use logits (the strict rule) every live one."""
    mask = modality_mask(live, modalities)
    if use_logits is not None:
        mask = run_mask(np.asarray(use_logits, dtype=np.float64)[None], mask[None])[0]
    return tuple(name for name, on in zip(modalities, mask, strict=True) if on)


def greedy_fill(priority: np.ndarray, costs: np.ndarray, budget: float,
                run: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
    """Bool (modalities, layers) of the chosen slots: block 0 of each modality that runs, then
    its other slots by descending priority (ties: earlier modality, then earlier block) as long
    as each still fits the budget; a slot that does not fit is passed over for cheaper ones
    further down. available: bool (modalities, layers), the slots a subnet has (default all)."""
    chosen = np.zeros(costs.shape, dtype=bool)
    chosen[run, 0] = True
    spent = float(costs[run, 0].sum())
    limit = budget + FILL_TOLERANCE * max(1.0, abs(budget))
    candidates = np.zeros(costs.shape, dtype=bool)
    candidates[run, 1:] = True
    if available is not None:
        candidates &= available
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


def select_slots(scores: np.ndarray, table: CostTable, budget: float, run: Sequence[str],
                 modalities: Sequence[str], depths: Mapping[str, int] | None = None
                 ) -> Allocation:
    """scores (len(modalities), layers): non-negative value of every (modality, block) slot;
    budget in the table's unit for the blocks only; run: the modalities that run (the live
    ones, or modalities_to_run's choice among them); depths: the blocks each modality has in
    the subnet that runs (default: all). Returns modality -> sorted block indices for those
    (block 0 even when it alone exceeds the budget)."""
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
    available = None if depths is None else subnet_slots(depths, modalities, costs.shape[1])
    return as_allocation(greedy_fill(priority, costs, budget, modality_mask(run, modalities),
                                     available), modalities)


def subnet_slots(depths: Mapping[str, int], modalities: Sequence[str], layers: int
                 ) -> np.ndarray:
    """Bool (modalities, layers): the first depths[name] blocks of each modality."""
    return np.arange(layers)[None, :] < np.array([[depths[name]] for name in modalities])


def check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def straight_through_use(
    use_logits: torch.Tensor, live: torch.Tensor, temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The use decision of a batch and its differentiable weights, for model(..., present=...).

    use_logits (B, modalities) (plus logistic noise in training: a Gumbel-sigmoid sample); live
    (B, modalities) bool. Returns (run (B, modalities) bool, weights (B, modalities)): forward
    exactly run_mask(use_logits, live) as 0/1; backward the gradient of
    sigmoid(use_logits / temperature) for the live modalities (a dead one is fixed at 0)."""
    check_temperature(temperature)
    run = torch.from_numpy(run_mask(use_logits.detach().cpu().numpy(),
                                    live.cpu().numpy().astype(bool))).to(live.device)
    soft = torch.sigmoid(use_logits / temperature) * live.to(use_logits.dtype)
    return run, run.to(use_logits.dtype) + (soft - soft.detach())


def straight_through_gates(
    log_values: torch.Tensor, table: CostTable, budgets: torch.Tensor, run: torch.Tensor,
    modalities: Sequence[str], temperature: float = 1.0,
) -> Mapping[str, torch.Tensor]:
    """Differentiable gates for model(..., gates=...), modality -> (B, layers).

    log_values (B, modalities, layers): log of each slot's value (the controller's logits, plus
    Gumbel noise in training for Gumbel top-k sampling); budgets (B,) block budgets in the
    table's unit; run (B, modalities) bool, the modalities that run. Forward: exactly
    select_slots(exp(log_values[b]), ...) as 0/1. Backward: the gradient of
    sigmoid((log value - log cost - threshold) / temperature) for the slots the budget decides
    (block 0 and the modalities that do not run are fixed, so they get none)."""
    check_temperature(temperature)
    costs = cost_matrix(table, modalities)
    if log_values.shape[1:] != costs.shape:
        raise ValueError(f"log values of shape {tuple(log_values.shape)}, expected "
                         f"(B, {costs.shape[0]}, {costs.shape[1]})")
    priority = log_priority(log_values.detach().double().cpu().numpy(), costs)
    run_np = run.cpu().numpy().astype(bool)
    hard = np.zeros(priority.shape, dtype=np.float32)
    threshold = np.zeros(len(priority), dtype=np.float64)
    for b in range(len(priority)):
        chosen = greedy_fill(priority[b], costs, float(budgets[b]), run_np[b])
        hard[b] = chosen
        threshold[b] = selection_threshold(priority[b], chosen, run_np[b])
    decided = np.zeros(priority.shape, dtype=bool)
    decided[:, :, 1:] = run_np[:, :, None]
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


def selection_threshold(priority: np.ndarray, chosen: np.ndarray, run: np.ndarray) -> float:
    """The log value per cost at which a slot changes from left out to taken: midway between
    the lowest taken and the highest left-out optional slot (one unit beyond when all or none
    of them were taken)."""
    optional = np.zeros(priority.shape, dtype=bool)
    optional[run, 1:] = True
    finite = optional & np.isfinite(priority)
    taken, left = priority[finite & chosen], priority[finite & ~chosen]
    if len(taken) and len(left):
        return float(0.5 * (taken.min() + left.max()))
    if len(taken):
        return float(taken.min() - 1.0)
    if len(left):
        return float(left.max() + 1.0)
    return 0.0
