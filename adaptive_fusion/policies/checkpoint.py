"""Checkpoints of the learned policies (the layer controller, the DynMM gate):
`<stem>.safetensors` (weights) + `<stem>.json` (the network's sizes, the detector geometry it was
trained for, training provenance, metrics), as detector checkpoints are; loading rebuilds the
network from the JSON and refuses weights that do not fit it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adaptive_fusion.model.checkpoint import CheckpointError, checkpoint_paths, read_json
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.policies.gate import GateConfig, ModalityGate
from adaptive_fusion.policies.network import ControllerConfig, LayerController

FORMAT_VERSION = 1
MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_CONTROLLER = MODELS / "controller.safetensors"
DEFAULT_GATE = MODELS / "gate.safetensors"
# format name -> (the JSON key of the network's config, how to build the network from it)
KINDS: dict[str, tuple[str, Callable[[dict, ModelConfig], torch.nn.Module]]] = {
    "adaptive_fusion.controller": (
        "controller", lambda d, model: LayerController(ControllerConfig.from_dict(d), model)),
    "adaptive_fusion.gate": (
        "gate", lambda d, model: ModalityGate(GateConfig.from_dict(d), model)),
}


def _save(network: torch.nn.Module, kind: str, path: str | Path, metadata: dict) -> Path:
    weights_path, json_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.detach().contiguous()
               for name, tensor in network.state_dict().items()}, str(weights_path))
    document = {"format": kind, "version": FORMAT_VERSION,
                KINDS[kind][0]: network.config.to_dict(),
                "detector_model": network.model_config.to_dict(), **metadata}
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return weights_path


def _load(path: str | Path, kind: str) -> tuple[torch.nn.Module, dict]:
    weights_path, json_path = checkpoint_paths(path)
    document = read_json(json_path, CheckpointError, f"{KINDS[kind][0]} config")
    if document.get("format") != kind or document.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{json_path} is not an {kind} v{FORMAT_VERSION} checkpoint "
                              f"(format={document.get('format')!r})")
    key, build = KINDS[kind]
    try:
        network = build(document[key], ModelConfig.from_dict(document["detector_model"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{json_path}: invalid {key} config: {error}") from error
    try:
        network.load_state_dict(load_file(str(weights_path)), strict=True)
    except Exception as error:  # safetensors' own errors, missing file, or mismatched tensors
        raise CheckpointError(f"{weights_path} does not hold this {key}'s weights: "
                              f"{error}") from error
    # Channels-last convolution weights, as the detector's: the controller's decide() at batch
    # 1 took 1.08 ms instead of 1.29 (quiet host, interleaved); the outputs are the same.
    return network.to(memory_format=torch.channels_last).eval(), document


def save_controller(controller: LayerController, path: str | Path, metadata: dict) -> Path:
    return _save(controller, "adaptive_fusion.controller", path, metadata)


def load_controller(path: str | Path) -> tuple[LayerController, dict]:
    """Rebuild the controller from `<stem>.json`, load `<stem>.safetensors` strictly; returns it
    in eval mode with the JSON document."""
    return _load(path, "adaptive_fusion.controller")


def save_gate(gate: ModalityGate, path: str | Path, metadata: dict) -> Path:
    return _save(gate, "adaptive_fusion.gate", path, metadata)


def load_gate(path: str | Path) -> tuple[ModalityGate, dict]:
    """The DynMM gate of `<stem>.json` / `<stem>.safetensors`, as load_controller."""
    return _load(path, "adaptive_fusion.gate")
