"""An architecture (the genome of the architecture search): which subnet of the detector's
weights runs. Per modality: its depth (the first `depth` blocks), its MLP hidden width (the first
`mlp_hidden` units), its attention heads (the first `heads` heads), and its token resolution (the
full patch grid, or tokens average-pooled `token_pool` x `token_pool` before the blocks and
their update upsampled back after them); plus the fusion operator. Every subnet slices the full
weights, as once-for-all networks do, so a smaller one really computes less.

The allowed values are the tuples below, relative to the model's full sizes (ModelConfig), so
that a tiny test model has a search space of the same form.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType

import numpy as np

from adaptive_fusion.model.config import ModelConfig

DEPTHS = (1, 2, 4, 6, 8)  # blocks per modality, up to config.layers (which is always allowed)
MLP_SHARES = (0.25, 0.5, 1.0)  # of the full MLP hidden width, dim * mlp_ratio
HEAD_SHARES = (0.25, 0.5, 1.0)  # of config.heads; the head dimension stays dim / heads
TOKEN_POOLS = (1, 2)  # 1: the full token grid; 2: 2x2 pooled, about a quarter of the tokens
FULL = "full"  # an architecture setting naming every block of the model
FORMAT = "adaptive_fusion.architecture"
FORMAT_VERSION = 1


class ArchitectureError(ValueError):
    """An architecture file or value that is malformed or outside the model's search space."""


@dataclass(frozen=True)
class StreamArchitecture:
    """The subnet of one modality's block stack."""

    depth: int
    mlp_hidden: int
    heads: int
    token_pool: int = 1


@dataclass(frozen=True)
class Architecture:
    """One subnet: each modality's StreamArchitecture, by modality name, and the fusion."""

    streams: Mapping[str, StreamArchitecture]
    fusion: str = "concat"

    def __post_init__(self):
        object.__setattr__(self, "streams", MappingProxyType(dict(self.streams)))

    def __hash__(self) -> int:
        return hash((tuple(self.streams.items()), self.fusion))

    def __reduce__(self):
        """Copies (a model's deepcopy, as AveragedModel makes) rebuild it from a plain dict:
        the read-only mapping itself cannot be copied."""
        return Architecture, (dict(self.streams), self.fusion)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "fusion": self.fusion,
                "streams": {name: {f.name: getattr(stream, f.name)
                                   for f in fields(StreamArchitecture)}
                            for name, stream in self.streams.items()}}

    @classmethod
    def from_dict(cls, data: object) -> "Architecture":
        """The architecture a to_dict document describes; ArchitectureError says what is wrong.
        Its values are checked against a model by SearchSpace.validate."""
        if not isinstance(data, dict):
            raise ArchitectureError(f"an architecture is a JSON object, got {data!r}")
        if (data.get("format"), data.get("version")) != (FORMAT, FORMAT_VERSION):
            raise ArchitectureError(f"not an {FORMAT} v{FORMAT_VERSION} document (format="
                                    f"{data.get('format')!r}, version={data.get('version')!r})")
        check_keys(data, {"format", "version", "fusion", "streams"}, "architecture")
        if not isinstance(data["streams"], dict) or not isinstance(data["fusion"], str):
            raise ArchitectureError("'streams' must map modality names to objects and "
                                    "'fusion' must be a string")
        streams = {}
        names = {f.name for f in fields(StreamArchitecture)}
        for name, values in data["streams"].items():
            if not isinstance(values, dict):
                raise ArchitectureError(f"streams.{name} must be an object, got {values!r}")
            check_keys(values, names, f"streams.{name}")
            wrong = [key for key, value in values.items()
                     if not isinstance(value, int) or isinstance(value, bool)]
            if wrong:
                raise ArchitectureError(f"streams.{name}: {wrong} must be integers")
            streams[name] = StreamArchitecture(**values)
        return cls(streams, data["fusion"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, config: ModelConfig) -> "Architecture":
        """The architecture in the JSON file at `path`, checked against the model `config`."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise ArchitectureError(f"cannot read architecture {path}: {error}") from error
        except json.JSONDecodeError as error:
            raise ArchitectureError(f"{path} is not valid JSON: {error}") from error
        try:
            architecture = cls.from_dict(data)
            SearchSpace.of(config).validate(architecture)
        except ArchitectureError as error:
            raise ArchitectureError(f"{path}: {error}") from error
        return architecture


def check_keys(values: dict, expected: set[str], where: str) -> None:
    missing, unknown = sorted(expected - set(values)), sorted(set(values) - expected)
    if missing or unknown:
        raise ArchitectureError(f"{where}: missing keys {missing}, unknown keys {unknown}")


@dataclass(frozen=True)
class SearchSpace:
    """The allowed values of each dimension for one model, smallest first."""

    modalities: tuple[str, ...]
    depths: tuple[int, ...]
    mlp_hidden: tuple[int, ...]
    heads: tuple[int, ...]
    token_pools: tuple[int, ...]
    fusions: tuple[str, ...]

    @classmethod
    def of(cls, config: ModelConfig) -> "SearchSpace":
        def shares(full: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
            return tuple(sorted({max(1, round(full * f)) for f in fractions}))

        return cls(
            modalities=config.modalities,
            depths=tuple(sorted({d for d in DEPTHS if d < config.layers} | {config.layers})),
            mlp_hidden=shares(config.dim * config.mlp_ratio, MLP_SHARES),
            heads=shares(config.heads, HEAD_SHARES),
            token_pools=TOKEN_POOLS,
            fusions=config.fusion_ops,
        )

    def _uniform(self, pick, fusion: str) -> Architecture:
        """Every modality with pick(choices) of each dimension."""
        stream = StreamArchitecture(pick(self.depths), pick(self.mlp_hidden), pick(self.heads),
                                    pick(self.token_pools[::-1]))  # pool 1 is the largest
        return Architecture({name: stream for name in self.modalities}, fusion)

    def full(self) -> Architecture:
        """Today's detector: every block at full width on the full grid, the first fusion
        operator of the model (concat, unless the model has none)."""
        return self._uniform(lambda choices: choices[-1], self.fusions[0])

    def largest(self) -> Architecture:
        """The most compute: full, with the last (costliest) fusion operator."""
        return self._uniform(lambda choices: choices[-1], self.fusions[-1])

    def smallest(self) -> Architecture:
        return self._uniform(lambda choices: choices[0], self.fusions[0])

    def sample(self, rng: np.random.Generator) -> Architecture:
        """Each dimension of each modality, and the fusion, uniformly from its choices."""
        def pick(choices):
            return choices[rng.integers(len(choices))]

        return Architecture(
            {name: StreamArchitecture(int(pick(self.depths)), int(pick(self.mlp_hidden)),
                                      int(pick(self.heads)), int(pick(self.token_pools)))
             for name in self.modalities}, str(pick(self.fusions)))

    def validate(self, architecture: Architecture) -> None:
        if set(architecture.streams) != set(self.modalities):
            raise ArchitectureError(f"modalities {sorted(architecture.streams)} differ from the "
                                    f"model's {sorted(self.modalities)}")
        for name, stream in architecture.streams.items():
            for key, allowed in (("depth", self.depths), ("mlp_hidden", self.mlp_hidden),
                                 ("heads", self.heads), ("token_pool", self.token_pools)):
                if getattr(stream, key) not in allowed:
                    raise ArchitectureError(f"{name}.{key} {getattr(stream, key)} is not one of "
                                            f"{list(allowed)}")
        if architecture.fusion not in self.fusions:
            raise ArchitectureError(f"fusion {architecture.fusion!r} is not one of the model's "
                                    f"{list(self.fusions)} (ModelConfig.fusion_ops)")


def choose_architecture(value: str, config: ModelConfig, default: str | Path | None = None
                        ) -> Architecture:
    """What an `architecture` setting names: FULL, every block of the model; "", the `default`
    file where the model has one (the packaged model's recommended subnet), else every block;
    anything else, an architecture file, checked against the model."""
    if value == FULL or (not value and default is None):
        return SearchSpace.of(config).full()
    return Architecture.load(value or default, config)
