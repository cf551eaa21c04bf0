"""The supernet: architecture files, today's model unchanged under the full architecture, real
savings as a subnet shrinks, every choice trainable, sandwich training that learns and resumes
exactly, and its command."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from adaptive_fusion.cli.main import main
from adaptive_fusion.lab.supernet.config import load_supernet_config
from adaptive_fusion.lab.supernet.trainer import (
    SupernetTrainer,
    initialise_where_fits,
    within_depths,
)
from adaptive_fusion.lab.training.data import split_batch
from adaptive_fusion.lab.training.loss import training_loss
from adaptive_fusion.model.architecture import (
    Architecture,
    ArchitectureError,
    SearchSpace,
    StreamArchitecture,
)
from adaptive_fusion.model.blocks import MLP, Block, SelfAttention
from adaptive_fusion.model.checkpoint import load_checkpoint
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.flops import count_flops
from adaptive_fusion.model.tokenizers import RASTER_CHANNELS, raster_stride

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "config" / "supernet" / "tiny.yaml"
SMALL = ModelConfig(image_width=128, image_height=96, dim=32, heads=2, layers=4,
                    depth_window=3, fusion_ops=("concat", "cross_attention"))


def rasters(config: ModelConfig, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(batch, RASTER_CHANNELS[name],
                             config.image_height // raster_stride(name, config),
                             config.image_width // raster_stride(name, config),
                             generator=generator)
            for name in config.modalities}


def test_architecture_json_round_trip_and_clear_errors(tmp_path):
    space = SearchSpace.of(ModelConfig(fusion_ops=("concat", "cross_attention")))
    assert space.depths == (1, 2, 4, 6, 8) and space.mlp_hidden == (64, 128, 256)
    assert space.heads == (1, 2, 4) and space.token_pools == (1, 2)
    architecture = space.sample(np.random.default_rng(3))
    path = architecture.save(tmp_path / "a.json")
    assert Architecture.load(path, ModelConfig(fusion_ops=("concat", "cross_attention"))) == (
        architecture)
    assert hash(Architecture.from_dict(architecture.to_dict())) == hash(architecture)

    document = space.full().to_dict()
    bad = {**document, "streams": {**document["streams"],
                                   "camera": {**document["streams"]["camera"], "heads": 3}}}
    path.write_text(json.dumps(bad))
    with pytest.raises(ArchitectureError, match=r"a.json: camera.heads 3 is not one of \[1, 2, 4"):
        Architecture.load(path, ModelConfig())
    path.write_text(json.dumps({**document, "fusion": "cross_attention"}))
    with pytest.raises(ArchitectureError, match="fusion_ops"):
        Architecture.load(path, ModelConfig())  # the shipped model has no cross attention
    path.write_text(json.dumps({**document, "streams": {
        **document["streams"], "depth": {"depth": 2, "heads": 1, "mlp_hidden": 64}}}))
    with pytest.raises(ArchitectureError, match=r"depth: missing keys \['token_pool'\]"):
        Architecture.load(path, ModelConfig())
    path.write_text(json.dumps({**document, "streams": {
        **document["streams"], "lidar": {**document["streams"]["lidar"], "depth": 2.0}}}))
    with pytest.raises(ArchitectureError, match="must be integers"):
        Architecture.load(path, ModelConfig())
    path.write_text(json.dumps({**document, "version": 7}))
    with pytest.raises(ArchitectureError, match="version=7"):
        Architecture.load(path, ModelConfig())
    path.write_text("{")
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        Architecture.load(path, ModelConfig())
    with pytest.raises(ValueError, match="fusion_ops"):
        ModelConfig(fusion_ops=("sum",)).validate()


def plain_attention(self, x):
    """SelfAttention.forward before the supernet: the whole layers."""
    batch, tokens, dim = x.shape
    q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


def test_full_architecture_is_todays_shipped_model_bit_for_bit(monkeypatch):
    model, _ = load_checkpoint()
    assert model.cell_attention is None  # the shipped checkpoint loaded strictly, as it was
    inputs = rasters(model.config, 2)
    generator = torch.Generator().manual_seed(1)
    gates = {m: torch.rand(2, model.config.layers, generator=generator)
             for m in model.config.modalities}
    settings = ((None, None), ({"camera": (0, 3), "depth": 1, "lidar": (0, 1, 7)}, None),
                (None, gates))

    def run_all() -> list[dict]:
        return [model(inputs, allocation, None, gate) for allocation, gate in settings]

    with torch.no_grad():
        ours = run_all()
        model.use_architecture(SearchSpace.of(model.config).full())
        explicit = run_all()
        with monkeypatch.context() as patch:
            patch.setattr(SelfAttention, "forward", plain_attention)
            patch.setattr(MLP, "forward", lambda self, x: self.proj(F.gelu(self.fc(x))))
            patch.setattr(Block, "forward", lambda self, x, heads=None, hidden=None: (
                lambda y: y + self.mlp(self.norm2(y)))(x + self.attn(self.norm1(x))))
            today = run_all()
    for a, b, c in zip(ours, explicit, today, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key


def test_flops_fall_as_the_architecture_shrinks():
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(ModelConfig(fusion_ops=("concat", "cross_attention"))).eval()
    space = SearchSpace.of(model.config)
    inputs = rasters(model.config, 1)

    def flops(**change) -> int:
        fusion = change.pop("fusion", "concat")
        stream = StreamArchitecture(**{"depth": 8, "mlp_hidden": 256, "heads": 4,
                                       "token_pool": 1, **change})
        model.use_architecture(Architecture({m: stream for m in model.config.modalities},
                                            fusion))
        with torch.no_grad():
            return count_flops(lambda: model(inputs))

    full = flops()
    assert full == flops(mlp_hidden=256)
    assert flops(mlp_hidden=128) < full and flops(mlp_hidden=64) < flops(mlp_hidden=128)
    assert flops(heads=2) < full and flops(heads=1) < flops(heads=2)
    assert flops(depth=4) < full and flops(depth=1) < flops(depth=4)
    # 300 tokens pooled to 80: the blocks' share of the FLOPs falls to about a quarter or less.
    blocks = full - flops(depth=1)
    pooled_blocks = flops(token_pool=2) - flops(depth=1, token_pool=2)
    assert pooled_blocks < 0.3 * blocks
    one_block = blocks / (3 * 7)
    assert full < flops(fusion="cross_attention") < full + 1.5 * one_block  # about one block
    model.use_architecture(space.smallest())
    with torch.no_grad():
        assert count_flops(lambda: model(inputs)) < 0.2 * full


def test_a_narrow_block_reads_only_its_first_heads_and_hidden_units():
    torch.manual_seed(0)
    block = Block(dim=32, heads=4, mlp_ratio=2)
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        narrow = block(x, heads=2, hidden=16)
        qkv = block.attn.qkv.weight.view(3, 4, 8, 32)  # (q/k/v, head, head_dim, dim)
        qkv[:, 2:] += 1.0  # heads 2 and 3
        block.attn.proj.weight[:, 16:] += 1.0
        block.mlp.fc.weight[16:] += 1.0
        block.mlp.proj.weight[:, 16:] += 1.0
        assert torch.equal(block(x, heads=2, hidden=16), narrow)
        assert not torch.equal(block(x), block(x, heads=2, hidden=16))
        qkv[1, 0] += 1.0  # the keys of head 0
        assert not torch.equal(block(x, heads=2, hidden=16), narrow)


def every_choice(space: SearchSpace) -> list[Architecture]:
    """Architectures that between them take every value of every dimension."""
    values = {"depth": space.depths, "mlp_hidden": space.mlp_hidden, "heads": space.heads,
              "token_pool": space.token_pools}
    count = max(len(v) for v in (*values.values(), space.fusions))
    return [Architecture({m: StreamArchitecture(**{k: v[(i + j) % len(v)]
                                                   for k, v in values.items()})
                          for j, m in enumerate(space.modalities)},
                         space.fusions[i % len(space.fusions)]) for i in range(count)]


def test_every_choice_runs_at_batch_1_and_4_and_trains():
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL)
    for architecture in every_choice(SearchSpace.of(SMALL)):
        model.use_architecture(architecture)
        model.eval()
        with torch.no_grad():
            one = model(rasters(SMALL, 1))
            four = model(rasters(SMALL, 4))
        assert one["heatmap"].shape[0] == 1 and four["heatmap"].shape[0] == 4
        model.train()
        model.zero_grad()
        outputs = model(rasters(SMALL, 4), {m: (0,) for m in SMALL.modalities})
        sum(value.float().mean() for value in outputs.values()).backward()
        grad = model.streams["camera"].blocks[0].mlp.fc.weight.grad
        hidden = architecture.streams["camera"].mlp_hidden
        assert grad[:hidden].abs().sum() > 0 and not grad[hidden:].any()  # real slicing
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)
    with pytest.raises(ValueError, match="outside 0..0"):  # the allocation within the depth
        model.use_architecture(SearchSpace.of(SMALL).smallest())
        model(rasters(SMALL, 1), {"camera": (0, 1)})


def test_supernet_starts_from_the_shipped_weights_where_they_fit():
    shipped, _ = load_checkpoint()
    torch.manual_seed(0)
    supernet = AdaptiveFusionDetector(ModelConfig(fusion_ops=("concat", "cross_attention")))
    fresh = initialise_where_fits(supernet, shipped)
    assert fresh and all(name.startswith("cell_attention.") for name in fresh)
    for name, tensor in shipped.state_dict().items():
        assert torch.equal(supernet.state_dict()[name], tensor), name
    # The new fusion starts as concat: its attention adds nothing yet.
    inputs = rasters(supernet.config, 1)
    with torch.no_grad():
        concat = supernet.eval()(inputs)
        supernet.use_architecture(SearchSpace.of(supernet.config).largest())
        torch.testing.assert_close(supernet(inputs)["heatmap"], concat["heatmap"])
    assert within_depths({"camera": (0, 2, 5)}, SearchSpace.of(supernet.config).smallest()) == {
        "camera": (0,)}


def tiny_config(tmp_path: Path, out: str, steps: int | None) -> Path:
    values = yaml.safe_load(TINY.read_text())
    values["out_dir"] = str(tmp_path / out)
    values["data"]["cache_dir"] = str(tmp_path / "cache")
    values["schedule"]["max_steps"] = steps
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def subnet_losses(trainer: SupernetTrainer, batch: dict) -> dict[str, float]:
    """The largest and the smallest subnet's loss on a fixed batch, every block of their depth."""
    rasters_, targets = split_batch(batch)
    losses = {}
    trainer.model.eval()
    with torch.no_grad():
        for name in ("largest", "smallest"):
            trainer.model.use_architecture(getattr(trainer.space, name)())
            losses[name] = training_loss(trainer.model(rasters_), targets)["loss"].item()
    trainer.model.train()
    return losses


def test_sandwich_training_learns_and_resumes_exactly(tmp_path):
    straight = tiny_config(tmp_path, "straight", 6)
    trainer = SupernetTrainer(load_supernet_config(straight), show_progress=False)
    batch = next(iter(trainer.epoch_loader(0)))
    before = subnet_losses(trainer, batch)
    result = trainer.train()
    after = subnet_losses(trainer, batch)
    trainer.close()
    assert result["step"] == 6
    assert {"largest", "smallest", "random0", "random1", "loss"} <= set(result["losses"])
    assert after["largest"] < before["largest"] and after["smallest"] < before["smallest"]
    assert {"val_largest", "val_smallest", "val_today"} <= set(result["metrics"])

    stopped = tiny_config(tmp_path, "stopped", 3)  # mid-epoch, after an epoch's validation
    assert SupernetTrainer(load_supernet_config(stopped), show_progress=False).train()[
        "step"] == 3
    values = yaml.safe_load(stopped.read_text())
    values["schedule"]["max_steps"] = 6
    stopped.write_text(yaml.safe_dump(values))
    resumed = SupernetTrainer(load_supernet_config(stopped), resume=True, show_progress=False)
    assert resumed.train()["step"] == 6
    for name in ("last.safetensors", "last_state.safetensors"):
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "stopped" / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    state = json.loads((tmp_path / "stopped" / "last_state.json").read_text())
    assert state["progress"]["step"] == 6


def test_train_supernet_command_runs_the_tiny_config(tmp_path, capsys):
    path = tiny_config(tmp_path, "cli", 2)
    assert main(["train-supernet", "--config", str(path), "--json"]) == 0
    output = capsys.readouterr().out
    assert json.loads(output[output.rindex("\n{"):])["step"] == 2
    assert main(["train-supernet", "--config", str(path)]) == 2  # never over a stopped run
    assert "--resume" in capsys.readouterr().out
    assert main(["train-supernet", "--config", str(path), "--resume", "--max-steps", "3"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    document = json.loads((tmp_path / "cli" / "last.json").read_text())
    assert document["model"]["fusion_ops"] == ["concat", "cross_attention"]
