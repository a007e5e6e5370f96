"""GPU check: the suite's own code paths at paper shapes with random weights, before any cluster time is spent.

Usage: python benchmarks/gpu_check.py --shapes paper --device cuda --json gpu_check.json
       python benchmarks/gpu_check.py --shapes tiny --device cpu --steps 2      (seconds, any machine)

Nothing is downloaded (HF_HUB_OFFLINE is set; every model is built from a transformers config with random
weights). Random language models, CLIP towers and a word-level tokenizer of the real vocabulary size are saved to
a scratch folder and assembled by the suite's own `assemble_llava`, exactly as `models.*.pretrained` blocks are;
then three parts run the DAG's functions on synthetic records of full context length (`<image>` + text, truncated
by the vicuna_v1 template at `max_length`):

* target_train: `selectbench.training.train.train` with config/paper.yaml's target recipe (LoRA r 128 on every
  LLM linear, bf16, gradient checkpointing, the Trainer), LLaVA-1.5-7B-shaped (Vicuna-7B + CLIP ViT-L/14-336);
* proxy_trajectories: `trajectories_for_checkpoint` (XMAS's attention trajectories, the spec's defaults) on a
  StableLM-2-1.6B-shaped proxy, one proxy checkpoint;
* proxy_gradients: `gradient_features` (per-example LoRA gradients, Adam-preconditioned, projected) on that proxy
  with the gradient warm-up's LoRA (`apply_lora` with `lora_config`), as `load_warm_model` leaves it.

Each part reports its step times (first step = warm-up, then the median of the rest), tokens/s over the
steady steps and peak memory: torch.cuda.max_memory_allocated on a GPU (reset per part), the process's peak
RSS so far on CPU (it only grows, so later parts include earlier ones). Batch sizes and the training recipe
come from --config (config/paper.yaml: features.batch_size, features.gradient_batch_size for the gradient
pass, and the feature passes' features.dtype); one training step is one micro-batch (gradient accumulation 1)
unless --global-batch keeps the recipe's accumulation. A part that fails (out of memory, say) is reported with its
error and the peak memory it reached, the others still run, and the exit status is 1; --json is rewritten after
every part, so a run cut short keeps the parts that finished; a feature pass stops taking batches after
--pass-budget-s (its `steps` says how many ran).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: every part is built from configs
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import gc
import json
import math
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Published architectures (config.json of lmsys/vicuna-7b-v1.5, openai/clip-vit-large-patch14-336,
# stabilityai/stablelm-2-zephyr-1_6b); tiny = the same classes with a few small layers.
SHAPES: dict[str, dict[str, Any]] = {
    "paper": {
        "target_lm": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                      "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
                      "rms_norm_eps": 1e-5},
        "proxy_lm": {"vocab_size": 100352, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
                     "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
                     "partial_rotary_factor": 0.25, "use_qkv_bias": True, "layer_norm_eps": 1e-5,
                     "rope_theta": 10000},
        "vision": {"image_size": 336, "patch_size": 14, "hidden_size": 1024, "intermediate_size": 4096,
                   "num_hidden_layers": 24, "num_attention_heads": 16, "projection_dim": 768},
        "max_length": 2048,
    },
    "tiny": {
        "target_lm": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 256},
        "proxy_lm": {"vocab_size": 640, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 256,
                     "partial_rotary_factor": 0.25, "use_qkv_bias": True},
        "vision": {"image_size": 56, "patch_size": 14, "hidden_size": 32, "intermediate_size": 64,
                   "num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 32},
        "max_length": 96,
        "batch_size": 2,  # tiny runs override the config's batch sizes
    },
}


def word_tokenizer(vocab_size: int, out_dir: Path) -> None:
    """A fast word-level tokenizer with `vocab_size` entries (<unk>, <s>, </s>, w3 …): the real vocabulary size,
    so embeddings, lm_head and the loss have their real shapes; synthetic text is one token per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(out_dir)


def save_parts(shapes: dict[str, Any], device: str, out: Path) -> dict[str, Path]:
    """Random-weight language models (bf16, as released), a CLIP vision tower and its image processor, saved as
    local folders that a `pretrained:` block can name."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, StableLmConfig
    from transformers import StableLmForCausalLM

    from selectbench.models.build import image_processor_for

    init_device = device if device.startswith("cuda") else "cpu"  # initialising 7B on a GPU takes seconds
    paths = {}
    for name, config_cls, model_cls in (("target_lm", LlamaConfig, LlamaForCausalLM),
                                        ("proxy_lm", StableLmConfig, StableLmForCausalLM)):
        lm = shapes[name]
        config = config_cls(**lm, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
        with torch.device(init_device):
            model = model_cls(config).to(torch.bfloat16)
        paths[name] = out / name
        model.save_pretrained(paths[name])
        word_tokenizer(lm["vocab_size"], paths[name])
        del model
        _free()
    vision = shapes["vision"]
    tower = CLIPVisionModel(CLIPVisionConfig(**vision, num_channels=3)).to(torch.bfloat16)
    paths["vision"] = out / "vision"
    tower.save_pretrained(paths["vision"])
    image_processor_for(vision).save_pretrained(paths["vision"])
    return paths


def synthetic_records(n: int, max_length: int, images: Path, image_size: int) -> list[dict]:
    """LLaVA-format records with an image and more text than max_length, so every example is encoded at full
    context (the template truncates; the image tokens always fit). Images are non-square: pad-to-square runs."""
    import numpy as np
    from PIL import Image

    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, (image_size, image_size * 4 // 3, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    words = lambda k, start: " ".join(f"w{3 + (start + j) % 200}" for j in range(k))
    return [{"id": str(i), "image": f"{i % 4}.png",
             "conversations": [{"from": "human", "value": "<image>\n" + words(max_length // 8, i)},
                               {"from": "gpt", "value": words(max_length, 7 * i)}]}
            for i in range(n)]


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_bytes(device: str) -> tuple[int, str]:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale), "peak RSS of the process so far"


def summarise(times: list[float], tokens: list[int], device: str) -> dict[str, Any]:
    """Step times: the first (warm-up: kernels, allocator) apart, the median of the rest; tokens/s over them."""
    steady = times[1:] or times
    steady_tokens = tokens[1:] or tokens
    peak, peak_kind = _peak_bytes(device)
    return {"steps": len(times), "step_times_s": [round(t, 4) for t in times], "first_step_s": round(times[0], 4),
            "step_time_s": round(statistics.median(steady), 4),
            "tokens_per_step": round(statistics.mean(steady_tokens), 1),
            "tokens_per_s": round(sum(steady_tokens) / sum(steady), 1),
            "peak_memory_gib": round(peak / 2**30, 3), "peak_memory": peak_kind}


def assemble(role_cfg: dict[str, Any], lm: Path, vision: Path) -> tuple[Any, Any, Any]:
    """The role's `pretrained:` block with its Hub ids replaced by the random local parts; no projector file
    (a fresh projector, as the proxy has)."""
    from selectbench.models.assemble import assemble_llava

    block = {**role_cfg["pretrained"], "language_model": str(lm), "vision_tower": str(vision), "projector": None,
             "local_files_only": True}
    return assemble_llava(block)


def run_target_train(cfg: dict[str, Any], paths: dict[str, Path], work: Path, args, shapes) -> dict[str, Any]:
    """A few optimizer steps of the target's training recipe through the suite's train(), timed per step."""
    import torch
    from transformers import TrainerCallback

    from selectbench.data.images import ImageLoader
    from selectbench.models.conversation import make_template
    from selectbench.training.train import train

    role = cfg["models"]["target"]
    model, tokenizer, processor = assemble(role, paths["target_lm"], paths["vision"])
    template = make_template(tokenizer, model, {**role.get("template", {}), "max_length": shapes["max_length"]})
    finetune = dict(role["finetune"])
    batch = args.batch_size or shapes.get("batch_size") or finetune["batch_size"]
    global_batch = args.global_batch or batch
    finetune.update(batch_size=batch, global_batch=global_batch, epochs=1, save_steps=10**9, checkpoints=0,
                    save_only_model=True, group_by_length=False)
    finetune.pop("grad_accum", None)
    if args.device == "cpu":
        finetune["dataloader_workers"] = 0
    records = synthetic_records(args.steps * global_batch, shapes["max_length"], work / "images",
                                shapes["vision"]["image_size"])
    times: list[float] = []
    tokens: list[int] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, _args, state, control, **kwargs):
            _sync(args.device)
            self.t0 = time.perf_counter()

        def on_step_end(self, _args, state, control, **kwargs):
            _sync(args.device)
            times.append(time.perf_counter() - self.t0)
            tokens.append(global_batch * shapes["max_length"])  # every record is encoded at full length

    _reset_peak(args.device)
    trained, summary = train(model, tokenizer, template, ImageLoader(work / "images", processor), records, finetune,
                             work / "target_run", seed=0, threads=torch.get_num_threads(), callbacks=[StepTimer()])
    if summary["truncation"]["truncated"] != len(records) or summary["fully_masked"]:
        raise RuntimeError(f"synthetic records not at full length: {summary['truncation']}")
    out = summarise(times, tokens, args.device)
    lora = finetune.get("lora", {})
    out["settings"] = {"model": "LLaVA-1.5-7B-shaped" if args.shapes == "paper" else "tiny LLaVA (Llama)",
                       "finetune": finetune.get("finetune"), "lora_r": lora.get("r"), "lora_alpha": lora.get("alpha"),
                       "lora_targets": lora.get("target_modules"), "dtype": "bfloat16 (autocast) + fp32 trainable"
                       if finetune.get("bf16") else "float32",
                       "gradient_checkpointing": bool(finetune.get("gradient_checkpointing")),
                       "seq_length": shapes["max_length"], "image_tokens": model_image_tokens(trained),
                       "vocabulary": vocabulary(trained),
                       "batch_size": batch, "grad_accum": global_batch // batch, "global_batch": global_batch,
                       "train_loss": summary["train_loss"]}
    del trained, model
    _free()
    return out


def model_image_tokens(model) -> int:
    return int(getattr(model, "config", model).image_seq_length)


def vocabulary(model) -> int:
    """The assembled vocabulary: the language model's plus <image> and <pad>."""
    return int(model.config.get_text_config().vocab_size)


def proxy_batches(cfg: dict[str, Any], paths: dict[str, Path], work: Path, args, shapes, batch: int, n: int):
    """The assembled proxy and n collated batches (the feature passes' Collator over a SupervisedDataset)."""
    import torch

    from selectbench.data.images import ImageLoader
    from selectbench.models.assemble import torch_dtype
    from selectbench.models.conversation import make_template
    from selectbench.training.data import Collator, SupervisedDataset

    role = cfg["models"]["proxy"]
    model, tokenizer, processor = assemble(role, paths["proxy_lm"], paths["vision"])
    model = model.to(torch_dtype(args.feature_dtype))
    template = make_template(tokenizer, model, {**role.get("template", {}), "max_length": shapes["max_length"]})
    images = ImageLoader(work / "images", processor)
    records = synthetic_records(n * batch, shapes["max_length"], work / "images", shapes["vision"]["image_size"])
    dataset = SupervisedDataset(records, template, images)
    collate = Collator(tokenizer.pad_token_id, images)
    batches = [collate([dataset[j] for j in range(i * batch, (i + 1) * batch)]) for i in range(n)]
    assert all(b["input_ids"].shape[1] == shapes["max_length"] for b in batches)
    return model, batches, torch.device(args.device)


def timed_pass(fn: Callable[[Any], Any], batches: list[dict], device: str, budget_s: float | None = None
               ) -> tuple[list[float], list[int], float]:
    """One call of the pass's own function over the batches, timed per batch: the batches come from a generator
    that notes when each is asked for, so a batch's time runs from its request to the next one (the last to the
    return). Set-up before the first request (hooks, projection, moments) is returned apart. After budget_s the
    generator stops handing out batches (at least one always runs), so a very slow pass still ends."""
    marks: list[float] = []

    def feed():
        for b in batches:
            _sync(device)
            marks.append(time.perf_counter())
            if budget_s is not None and len(marks) > 1 and marks[-1] - marks[0] > budget_s:
                marks.pop()
                return
            yield b

    _sync(device)
    start = time.perf_counter()
    fn(feed())
    _sync(device)
    marks.append(time.perf_counter())
    times = [b - a for a, b in pairwise(marks)]
    return times, [int(b["attention_mask"].sum()) for b in batches[:len(times)]], marks[0] - start


def run_trajectories(cfg: dict[str, Any], paths, work: Path, args, shapes) -> dict[str, Any]:
    """XMAS's trajectory pass over one proxy checkpoint (trajectories_for_checkpoint with the feature's spec)."""
    from selectbench.features import FEATURES
    from selectbench.features.trajectories import trajectories_for_checkpoint

    batch = args.batch_size or shapes.get("batch_size") or cfg.get("features", {}).get("batch_size", 16)
    model, batches, device = proxy_batches(cfg, paths, work, args, shapes, batch, args.steps)
    spec = FEATURES["attention_trajectories"].spec(cfg.get("features", {}).get("specs", {}).get(
        "attention_trajectories", {}))
    _reset_peak(args.device)
    times, tokens, setup = timed_pass(partial(trajectories_for_checkpoint, model, spec=spec, device=device),
                                      batches, args.device, args.pass_budget_s)
    out = {**summarise(times, tokens, args.device), "setup_s": round(setup, 4)}
    out["settings"] = {"model": "StableLM-2-1.6B-shaped proxy" if args.shapes == "paper" else "tiny proxy (StableLM)",
                       "dtype": args.feature_dtype, "gradient_checkpointing": False,
                       "seq_length": shapes["max_length"], "image_tokens": model_image_tokens(model),
                       "vocabulary": vocabulary(model), "batch_size": batch, "spec": spec, "checkpoints_timed": 1}
    del model, batches
    _free()
    return out


def run_gradients(cfg: dict[str, Any], paths, work: Path, args, shapes) -> dict[str, Any]:
    """The per-example LoRA gradient pass (gradient_features) on the proxy with the warm-up's LoRA."""
    import torch

    from selectbench.features import FEATURES
    from selectbench.features.gradients import PerExampleGradients, gradient_features, lora_config
    from selectbench.training.train import apply_lora

    features = cfg.get("features", {})
    batch = (args.batch_size or shapes.get("batch_size") or features.get("gradient_batch_size")
             or features.get("batch_size", 16))
    model, batches, device = proxy_batches(cfg, paths, work, args, shapes, batch, args.steps)
    warm = cfg.get("gradient_warmup", {"lora_r": 128, "seed": 0})
    model = apply_lora(model, lora_config(warm), warm.get("seed", 0))
    for name, param in model.named_parameters():  # as load_warm_model leaves the warm-up model
        param.requires_grad = "lora_" in name
    model.eval().to(device)
    hooks = PerExampleGradients(model)
    names = hooks.names()
    hooks.close()
    params = dict(model.named_parameters())
    # Adam moments of the warm-up (values do not change the cost): m = 0, v = 1e-8
    adam = {n: {"exp_avg": torch.zeros_like(params[n], dtype=torch.float32).cpu(),
                "exp_avg_sq": torch.full_like(params[n], 1e-8, dtype=torch.float32).cpu(), "step": 1.0}
            for n in names}
    spec = FEATURES["lora_gradients"].spec(cfg.get("features", {}).get("specs", {}).get("lora_gradients", {}))
    _reset_peak(args.device)
    times, tokens, setup = timed_pass(partial(gradient_features, model, adam=adam, spec=spec, device=device),
                                      batches, args.device, args.pass_budget_s)
    out = {**summarise(times, tokens, args.device), "setup_s": round(setup, 4)}
    out["settings"] = {"model": "StableLM-2-1.6B-shaped proxy" if args.shapes == "paper" else "tiny proxy (StableLM)",
                       "dtype": args.feature_dtype, "gradient_checkpointing": False,
                       "seq_length": shapes["max_length"], "image_tokens": model_image_tokens(model.base_model.model),
                       "vocabulary": vocabulary(model.base_model.model),
                       "batch_size": batch, "lora_r": lora_config(warm)["r"],
                       "lora_parameters": int(sum(params[n].numel() for n in names)), "spec": spec}
    del model, batches, adam
    _free()
    return out


# slowest last: the report is rewritten after every part, so a run cut short keeps what finished
PARTS = {"target_train": run_target_train, "proxy_trajectories": run_trajectories, "proxy_gradients": run_gradients}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", choices=sorted(SHAPES), default="paper")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (batches) per part; the first is warm-up")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "paper.yaml",
                    help="recipe, templates and batch sizes (models.target/proxy, features, gradient_warmup)")
    ap.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    ap.add_argument("--batch-size", type=int, help="per-step batch of every part (default: the config's)")
    ap.add_argument("--global-batch", type=int, help="training: examples per optimizer step (default: one batch)")
    ap.add_argument("--feature-dtype", choices=("float32", "bfloat16", "float16"),
                    help="proxy passes' dtype (default: the config's features.dtype, else float32)")
    ap.add_argument("--pass-budget-s", type=float, default=600,
                    help="feature passes: no new batch after this many seconds (the steps run are reported)")
    ap.add_argument("--workdir", type=Path, help="scratch folder for the random parts (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the Trainer picks cuda whenever it sees one
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here (use --shapes tiny --device cpu)")
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = yaml.safe_load(args.config.read_text())
    args.feature_dtype = args.feature_dtype or cfg.get("features", {}).get("dtype", "float32")
    shapes = SHAPES[args.shapes]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "shapes": args.shapes, "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "config": str(args.config),
        "random_weights": True, "parts": {}}
    try:
        t0 = time.perf_counter()
        paths = save_parts(shapes, args.device, work / "parts")
        report["build_parts_s"] = round(time.perf_counter() - t0, 2)
        for name in args.parts:
            t0 = time.perf_counter()
            try:
                report["parts"][name] = PARTS[name](cfg, paths, work, args, shapes)
            except Exception as err:  # noqa: BLE001 - an out-of-memory part is a finding; the others still run
                peak, _ = _peak_bytes(args.device)
                report["parts"][name] = {"error": f"{type(err).__name__}: {str(err)[:2000]}",
                                         "peak_memory_gib": round(peak / 2**30, 3)}
                del err
            _free()
            report["parts"][name].update(steps_requested=args.steps, wall_s=round(time.perf_counter() - t0, 2))
            if args.json:
                args.json.write_text(json.dumps(report, indent=1, default=str))
            print(f"{name}: {json.dumps({k: v for k, v in report['parts'][name].items() if k != 'settings'})}",
                  flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    bad = [f"{part}.{key}" for part, values in report["parts"].items()
           for key in ("step_time_s", "tokens_per_s", "peak_memory_gib")
           if not (isinstance(values.get(key), (int, float)) and math.isfinite(values[key]) and values[key] > 0)]
    report["ok"] = not bad
    text = json.dumps(report, indent=1, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    if bad:
        failed = {p: v["error"][:300] for p, v in report["parts"].items() if "error" in v}
        print(f"not finite and positive: {bad}; failed parts: {failed}", file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
