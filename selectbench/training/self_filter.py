"""Self-Filter's stage 1 (Chen et al., ACL Findings 2024): the target trained on the whole pool jointly with a score
net that weights each example's loss.

  features  f_i = [unit CLIP image embedding, unit CLIP text embedding] of record i (the clip_embeddings feature;
                  the release's "clip" setting, 2 × 768 with ViT-L/14)
  score net s_i = w · f_i (one linear layer without bias, as the release)
  loss      per batch B: w_b = |B| · softmax_b(s_b); L = Σ_b w_b Σ_t ℓ_bt / Σ_b (supervised tokens of b)
  difficulty after training: −s_i (a low weight is a hard example: minimising L moves weight to easy ones)

Both are updated by the one optimizer (the score net at the fine-tune's learning rate, no weight decay), over the
target's own fine-tune recipe on the whole pool: a full-data training, which the method's cost carries.
Departures: the release's "scores" setting (ImageReward, CLIP score and GPT-3.5 ratings) needs a paid API and is not
offered; a text-only record's image half is zeros (the release's 158k pool has an image everywhere); the score net
starts from N(0, 0.02²) seeded (the release's post_init, unseeded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from selectbench.data.datadir import DataDir
from selectbench.data.images import ImageLoader
from selectbench.io import atomic_file, atomic_write_json
from selectbench.models.build import load_model
from selectbench.models.conversation import make_template

log = logging.getLogger(__name__)

SCORE_NET_FILE = "score_net.pt"


class ScoreNetWeighting:
    """Per-example loss weights |B| · softmax(w · f) over a batch, for training.train(weighting=...)."""

    def __init__(self, features: np.ndarray, seed: int = 0):
        self.features = torch.as_tensor(np.asarray(features, np.float32))
        generator = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Linear(self.features.shape[1], 1, bias=False)
        with torch.no_grad():
            self.net.weight.copy_(torch.randn(self.net.weight.shape, generator=generator) * 0.02)

    def parameters(self):
        return self.net.parameters()

    def scores(self, rows: torch.Tensor) -> torch.Tensor:
        device = self.net.weight.device
        return self.net(self.features[rows.cpu()].to(device))[:, 0]

    def weights(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.scores(rows), dim=0) * len(rows)

    def vector(self) -> np.ndarray:
        return self.net.weight.detach().cpu().numpy()[0].astype(np.float64)

    def load(self, checkpoint: Path) -> None:
        path = Path(checkpoint) / SCORE_NET_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint}: no {SCORE_NET_FILE}; the score net cannot resume from it")
        self.net.load_state_dict(torch.load(path, weights_only=True))

    def callback(self) -> TrainerCallback:
        return _ScoreNetCallback(self)


class _ScoreNetCallback(TrainerCallback):
    """The score net lives outside the model: the Trainer neither zeroes its gradients (it calls model.zero_grad),
    nor averages them across DDP ranks, nor saves it. This does all three."""

    def __init__(self, weighting: ScoreNetWeighting):
        self.weighting = weighting

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for param in self.weighting.parameters():
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad)
                    param.grad /= world

    def on_step_end(self, args, state, control, **kwargs):
        self.weighting.net.zero_grad(set_to_none=True)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            torch.save(self.weighting.net.state_dict(), folder / SCORE_NET_FILE)


def check_features(x: np.ndarray, pool_size: int, source: str) -> np.ndarray:
    """The clip_embeddings feature's array (N, 1, 2d) as (N, 2d), checked against the pool; source names the file."""
    if x.ndim != 3 or len(x) != pool_size:
        raise ValueError(f"{source}: expected embedding (N={pool_size}, 1, d), got {x.shape}")
    x = x[:, 0]
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise ValueError(f"{source}: {len(bad)} rows without a CLIP embedding (first row {bad[0]})")
    return x


def train_score_net(data: DataDir, base_dir: Path, features: np.ndarray, model_cfg: dict[str, Any], seed: int,
                    out_dir: Path, threads: int) -> dict[str, Any]:
    """Stage 1 on the whole pool, features (N, 2d) row-aligned with it; writes out_dir/score_net.npy (w) and
    returns the training summary. The trained target itself is not published: Self-Filter keeps only the net."""
    from selectbench.training.stages import weights_dtype
    from selectbench.training.train import is_main_process, train

    start = time.time()
    x = np.asarray(features, np.float32)
    model, tokenizer, processor = load_model(Path(base_dir) / "model", threads, weights_dtype(model_cfg))
    template = make_template(tokenizer, model, model_cfg["template"])
    weighting = ScoreNetWeighting(x, seed)
    # the features are an input of the run: other features must not resume its checkpoints
    cfg = {**model_cfg["finetune"], "score_net_features": hashlib.sha256(x.tobytes()).hexdigest()}
    _, summary = train(model, tokenizer, template, ImageLoader(data.image_root, processor), data.pool, cfg,
                       Path(out_dir), seed, threads, weighting=weighting)
    summary = {**summary, "wall_s": time.time() - start, "score_net_dim": int(x.shape[1])}
    if is_main_process():
        with atomic_file(Path(out_dir) / "score_net.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, weighting.vector())
        atomic_write_json(Path(out_dir) / "train_summary.json", summary)
    return summary


def read_score_net(pointer: Path) -> np.ndarray:
    """w of a trained score net, from the self_filter_scorer artifact (a JSON naming its file)."""
    info = json.loads(Path(pointer).read_text())
    return np.load(info["score_net"])
