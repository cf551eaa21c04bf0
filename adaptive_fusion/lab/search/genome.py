"""An Architecture as the integer vector pymoo's operators work on: per modality (in the model's
order) the index of its depth, MLP width, heads and token grid among the search space's
choices, then the index of the fusion operator. Indices, not values, so that every vector
within the bounds is an architecture of the space and the operators' steps are steps between
neighbouring choices."""

import numpy as np

from adaptive_fusion.model.architecture import Architecture, SearchSpace, StreamArchitecture

STREAM_GENES = ("depth", "mlp_hidden", "heads", "token_pool")


class GenomeCoding:
    def __init__(self, space: SearchSpace):
        self.space = space
        self.stream_choices = (space.depths, space.mlp_hidden, space.heads, space.token_pools)

    @property
    def length(self) -> int:
        return len(self.space.modalities) * len(STREAM_GENES) + 1

    def upper_bounds(self) -> np.ndarray:
        """The largest index of each gene (the smallest is 0)."""
        stream = [len(choices) - 1 for choices in self.stream_choices]
        return np.array(stream * len(self.space.modalities) + [len(self.space.fusions) - 1])

    def encode(self, architecture: Architecture) -> np.ndarray:
        self.space.validate(architecture)
        genes = []
        for name in self.space.modalities:
            stream = architecture.streams[name]
            genes += [choices.index(getattr(stream, gene))
                      for gene, choices in zip(STREAM_GENES, self.stream_choices, strict=True)]
        return np.array([*genes, self.space.fusions.index(architecture.fusion)])

    def decode(self, vector) -> Architecture:
        genes = [int(round(float(value))) for value in vector]
        if len(genes) != self.length or not all(
                0 <= g <= u for g, u in zip(genes, self.upper_bounds(), strict=True)):
            raise ValueError(f"{genes} is not a genome of this space (length {self.length}, "
                             f"each gene in 0..{list(self.upper_bounds())})")
        width = len(STREAM_GENES)
        streams = {
            name: StreamArchitecture(*(int(choices[g]) for g, choices in zip(
                genes[i * width:(i + 1) * width], self.stream_choices, strict=True)))
            for i, name in enumerate(self.space.modalities)}
        return Architecture(streams, self.space.fusions[genes[-1]])
