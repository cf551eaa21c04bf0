"""A training state (optimiser, schedule, progress, extra weights: nested dicts and lists of
tensors and plain values) as a pair of files without pickle: `<stem>.safetensors` holds the
tensors, `<stem>.json` the structure and the plain values, each tensor by its key."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TENSOR = "$tensor"  # {TENSOR: key}: the tensor stored under key
INT_KEYS = "$int_keys"  # {INT_KEYS: [[int key, value], ...]}: a dict keyed by ints (optimiser)


def _encode(value, key: str, tensors: dict[str, torch.Tensor]):
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().clone().contiguous()
        return {TENSOR: key}
    if isinstance(value, dict):
        if all(isinstance(name, str) for name in value):
            return {name: _encode(item, f"{key}/{name}", tensors) for name, item in value.items()}
        return {INT_KEYS: [[int(name), _encode(item, f"{key}/{name}", tensors)]
                           for name, item in value.items()]}
    if isinstance(value, list | tuple):
        return [_encode(item, f"{key}/{index}", tensors) for index, item in enumerate(value)]
    return value


def _decode(value, tensors: dict[str, torch.Tensor]):
    if isinstance(value, dict):
        if set(value) == {TENSOR}:
            return tensors[value[TENSOR]]
        if set(value) == {INT_KEYS}:
            return {name: _decode(item, tensors) for name, item in value[INT_KEYS]}
        return {name: _decode(item, tensors) for name, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    return value


def state_paths(stem: Path) -> tuple[Path, Path]:
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_state(stem: Path, state: dict) -> None:
    """Write both files, each atomically (the JSON last: it marks a complete state)."""
    tensors: dict[str, torch.Tensor] = {}
    document = _encode(state, "", tensors)
    weights, structure = state_paths(stem)
    save_file(tensors, str(weights.with_suffix(".partial")))
    weights.with_suffix(".partial").rename(weights)
    structure.with_suffix(".partial").write_text(json.dumps(document) + "\n")
    structure.with_suffix(".partial").rename(structure)


def load_state(stem: Path) -> dict:
    """The state save_state wrote; tuples come back as lists."""
    weights, structure = state_paths(stem)
    return _decode(json.loads(structure.read_text()), load_file(str(weights)))
