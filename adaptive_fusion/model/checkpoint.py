"""Checkpoints as a pair of files: `<stem>.safetensors` (weights) and `<stem>.json` (architecture,
classes, training provenance, metrics). Loading rebuilds the model from the JSON and refuses
weights whose names or shapes do not match it exactly."""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector

FORMAT = "adaptive_fusion.detector"
FORMAT_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.safetensors"
# The subnet of the packaged model that fusion_node runs unless told otherwise: the member of the
# architecture search's front that docs/model.md recommends ("The search").
DEFAULT_ARCHITECTURE = DEFAULT_MODEL.parent / "default_architecture.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match the architecture it declares."""


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """Either file of the pair (or the stem) -> (weights path, json path)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_checkpoint(model: AdaptiveFusionDetector, path: str | Path, metadata: dict) -> Path:
    """Write weights and JSON; metadata (training, metrics, ...) goes into the JSON as is."""
    weights_path, json_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(weights_path))
    umask = os.umask(0)
    os.umask(umask)
    weights_path.chmod(0o666 & ~umask)  # safetensors writes 0600; a shipped model must be readable
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "classes": list(model.config.classes),
        **metadata,
    }
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return weights_path


def read_json(path: str | Path, error: type[Exception], what: str) -> dict:
    """A JSON file's document; an unreadable or malformed file raises `error`, naming it."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as cause:
        raise error(f"cannot read {what} {path}: {cause}") from cause
    except json.JSONDecodeError as cause:
        raise error(f"{path} is not valid JSON: {cause}") from cause


def write_json(path: str | Path, document: dict) -> Path:
    """`document` as indented JSON at `path`, its directory made where missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_metadata(path: str | Path) -> dict:
    _, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"checkpoint config {json_path} not found")
    document = read_json(json_path, CheckpointError, "checkpoint config")
    if document.get("format") != FORMAT or document.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} is not an {FORMAT} v{FORMAT_VERSION} checkpoint "
            f"(format={document.get('format')!r}, version={document.get('version')!r})"
        )
    return document


def load_checkpoint(path: str | Path = DEFAULT_MODEL) -> tuple[AdaptiveFusionDetector, dict]:
    """Rebuild the model from `<stem>.json`, load `<stem>.safetensors` strictly, return it in eval
    mode (for inference) with the JSON document."""
    weights_path, json_path = checkpoint_paths(path)
    document = read_metadata(path)
    try:
        config = ModelConfig.from_dict(document["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{json_path}: invalid model config: {error}") from error
    if list(config.classes) != document.get("classes"):
        raise CheckpointError(f"{json_path}: 'classes' disagrees with the model config")
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} not found")
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {error}") from (
            error
        )
    model = AdaptiveFusionDetector(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_path} does not match the architecture in {json_path.name}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    wrong = [
        f"{name}: {tuple(state[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if state[name].shape != tensor.shape or state[name].dtype != tensor.dtype
    ]
    if wrong:
        raise CheckpointError(f"{weights_path}: tensors with wrong shape/dtype: {wrong[:5]}")
    model.load_state_dict(state, strict=True)
    # Channels-last convolution weights: at batch 1 on this CPU the stems' and head's convolutions
    # take about 0.4 ms less per frame, the whole of it fixed cost (bench/bench_model.py). The
    # outputs are the same, and save_checkpoint writes contiguous copies.
    return model.to(memory_format=torch.channels_last).eval(), document


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
