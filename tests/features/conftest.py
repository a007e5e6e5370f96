"""A tiny random-weight proxy 'run' on disk: published model (with tokenizer and processor) and checkpoints in
the Trainer's layout, so feature extraction is tested without training."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="session")
def proxy_run(tmp_path_factory, tiny_data, tiny_config):
    from transformers import AutoTokenizer

    from selectbench.models.build import build_llava, image_processor_for, save_model
    from selectbench.embedded.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("proxy")
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], root / "tok")
    tokenizer = AutoTokenizer.from_pretrained(root / "tok")
    arch = json.loads(json.dumps(tiny_config["models"]["proxy"]["recipe"]["arch"]))
    arch["text"].update(layers=2, heads=4, hidden_size=32)
    model = build_llava(arch, tokenizer, seed=0)
    processor = image_processor_for(arch["vision"])
    run = root / "run"
    save_model(model, tokenizer, processor, run / "model")
    checkpoints = []
    for step in (1, 2, 3):
        with torch.no_grad():
            for p in model.model.language_model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        path = run / "checkpoints" / f"checkpoint-{step}"
        model.save_pretrained(path)
        checkpoints.append(str(path))
    listing = run / "checkpoints.json"
    listing.write_text(json.dumps(checkpoints))
    return {"listing": listing, "checkpoints": checkpoints, "model_dir": run / "model", "arch": arch}
