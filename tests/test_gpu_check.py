"""benchmarks/gpu_check.py: the tiny run on CPU (so the GPU run is not its first), and paper shapes that are the
published architectures' sizes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ("target_train", "proxy_trajectories", "proxy_gradients")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_reports_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "tiny", "--device", "cpu", "--steps", "2",
                           "--json", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["random_weights"] and set(report["parts"]) == set(PARTS)
    for name in PARTS:
        part = report["parts"][name]
        assert part["steps"] == 2 and len(part["step_times_s"]) == 2
        for key in ("step_time_s", "tokens_per_s", "peak_memory_gib", "tokens_per_step"):
            assert isinstance(part[key], (int, float)) and math.isfinite(part[key]) and part[key] > 0, (name, key)
        settings = part["settings"]
        assert settings["seq_length"] == 96 and settings["image_tokens"] == 16
        assert part["tokens_per_step"] == settings["batch_size"] * settings["seq_length"]  # full-length records
        assert settings["vocabulary"] == {"target_train": 512, "proxy_trajectories": 640,
                                          "proxy_gradients": 640}[name] + 2  # + <image>, <pad> (assembly)
    train = report["parts"]["target_train"]["settings"]
    assert train["finetune"] == "lora" and train["lora_r"] == 128 and train["gradient_checkpointing"]
    assert train["dtype"].startswith("bfloat16")
    assert report["parts"]["proxy_gradients"]["settings"]["lora_parameters"] > 0


def test_paper_shapes_are_the_released_architectures():
    """Parameter counts on the meta device: Vicuna-7B 6.74B, StableLM-2-1.6B 1.64B, CLIP ViT-L/14-336 tower 303M;
    the vision tower gives LLaVA-1.5's 576 image tokens."""
    import torch
    from transformers import (CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, StableLmConfig,
                              StableLmForCausalLM)

    from selectbench.models.build import image_seq_length

    shapes = _module().SHAPES["paper"]
    with torch.device("meta"):
        target = LlamaForCausalLM(LlamaConfig(**shapes["target_lm"]))
        proxy = StableLmForCausalLM(StableLmConfig(**shapes["proxy_lm"]))
        tower = CLIPVisionModel(CLIPVisionConfig(**shapes["vision"]))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert round(count(target) / 1e9, 2) == 6.74
    assert round(count(proxy) / 1e9, 2) == 1.64
    assert 303e6 < count(tower) < 304e6
    assert image_seq_length(shapes["vision"]) == 576 and shapes["max_length"] == 2048
