"""Stage 1 and stage 2 (full and LoRA) on the tiny config, through the same functions the DAG calls."""

import json

import pytest
import torch

from selectbench.models.build import load_model
from selectbench.models.stages import build_tokenizer, checkpoint_dirs, finetune, train_base


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_data, tiny_config):
    out = tmp_path_factory.mktemp("base")
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], out / "tokenizer")
    summary = train_base(tiny_data, out / "tokenizer", tiny_config["models"]["target"], 0, out / "target", 1)
    assert summary["examples"] == len(tiny_data.captions())
    return out / "target"


def _weights(model_dir):
    model, _, _ = load_model(model_dir)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_base_model_is_saved_with_tokenizer_and_processor(base):
    model, tokenizer, processor = load_model(base / "model")
    assert model.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    assert model.config.image_seq_length == 9
    assert processor.crop_size["height"] == 24
    assert json.loads((base / "train_summary.json").read_text())["train_loss"] > 0


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_stage2_trains_language_model_and_projector_not_vision(tmp_path, base, tiny_data, tiny_config, mode):
    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    cfg["finetune"].update({"finetune": mode, "checkpoints": 2, "lr": 1e-2})
    if mode == "lora":
        cfg["finetune"]["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    before = _weights(base / "model")
    summary = finetune(tiny_data, base, list(range(40)), cfg, 0, tmp_path, 1)
    after = _weights(tmp_path / "model")
    assert summary["examples"] == 40
    assert set(before) == set(after)  # LoRA merged back into the plain LLaVA layout
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("model.vision_tower.") for k in changed)
    assert any(k.startswith("model.multi_modal_projector.") for k in changed)
    assert any("language_model" in k and ("q_proj" in k or "v_proj" in k) for k in changed)
    if mode == "lora":
        assert not any("mlp" in k for k in changed)  # only the LoRA targets (and the projector) moved
    assert len(checkpoint_dirs(tmp_path)) == 2


def test_finetune_resumes_from_its_last_checkpoint(tmp_path, base, tiny_data, tiny_config, caplog):
    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    cfg["finetune"]["checkpoints"] = 2
    finetune(tiny_data, base, list(range(64)), cfg, 0, tmp_path, 1)
    first = _weights(tmp_path / "model")
    with caplog.at_level("INFO"):
        finetune(tiny_data, base, list(range(64)), cfg, 0, tmp_path, 1)
    assert any("resuming from" in r.message for r in caplog.records)
    # a run that had finished resumes to the same weights, not to the starting ones
    resumed = _weights(tmp_path / "model")
    assert all(torch.equal(first[k], resumed[k]) for k in first)
    assert not all(torch.equal(first[k], v) for k, v in _weights(base / "model").items() if k in first)


def test_checkpoints_of_another_subset_are_not_resumed(tmp_path, base, tiny_data, tiny_config, caplog):
    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    cfg["finetune"]["checkpoints"] = 2
    finetune(tiny_data, base, list(range(64)), cfg, 0, tmp_path, 1)
    with caplog.at_level("INFO"):
        finetune(tiny_data, base, list(range(64, 128)), cfg, 0, tmp_path, 1)
    assert not any("resuming from" in r.message for r in caplog.records)
    assert any("come from another run" in r.message for r in caplog.records)


def test_lora_initialisation_does_not_depend_on_the_random_state(base):
    from selectbench.training.train import apply_lora

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    adapters = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever ran before (torch's default seed differs between processes)
        model = apply_lora(load_model(base / "model")[0], lora, seed=0)
        adapters.append({n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n})
    assert adapters[0] and all(torch.equal(adapters[0][n], adapters[1][n]) for n in adapters[0])
