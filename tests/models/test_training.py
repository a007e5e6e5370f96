"""Stage 1 and stage 2 (full and LoRA) on the tiny config, through the same functions the DAG calls."""

import json

import numpy as np
import pytest
import torch

from selectbench.models.build import load_model
from selectbench.embedded.recipe import scene_corpus
from selectbench.embedded.tokenizer import build_tokenizer
from selectbench.training.stages import checkpoint_dirs, finetune, train_base


def _projector(model):
    return {k: v.detach().clone() for k, v in model.model.multi_modal_projector.state_dict().items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_data, tiny_config):
    import selectbench.embedded.recipe as training

    out = tmp_path_factory.mktemp("base")
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], out / "tokenizer")
    moved, real_train = [], training.train

    def recording_train(model, *args, **kwargs):  # which training calls moved the projector
        before = _projector(model)
        model, summary = real_train(model, *args, **kwargs)
        moved.append(any(not torch.equal(before[k], v) for k, v in _projector(model).items()))
        return model, summary

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train", recording_train)
        summary = train_base(tiny_data, out / "tokenizer", tiny_config["models"]["target"], 0, out / "target", 1)
    # stage 0's mixed phase trains the projector; its presence phase names no `trainable`: the language model
    # alone, the projector stays as it was; stage 1 trains it again
    assert moved == [True, False, True]
    # the presence phase's loss target (unreachable in the tiny config) ran its whole cap and says so
    assert summary["stage0_1_until_loss"]["reached"] is False
    assert summary["stage0_1_until_loss"]["epochs"] == pytest.approx(2.0)
    # stage 1 trains on the captions and the scene part kept beside them, after the projector alignment and stage 0
    # (two phases on the scene corpus)
    assert summary["examples"] == len(tiny_data.captions()) + len(scene_corpus(tiny_data, 2))
    assert {"stage0_0_loss", "stage0_1_loss", "projector_align_accuracy"} <= set(summary)
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
    truncation = summary["truncation"]  # counted from the training encodings, with first examples
    assert truncation["records"] == 40 and truncation["max_length"] == cfg["template"]["max_length"]
    assert 0 <= truncation["fully_masked"] <= truncation["truncated"] <= truncation["records"]
    assert (truncation["fully_masked"], truncation["truncated"]) == (summary["fully_masked"], summary["truncated"])
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


def test_checkpoints_of_other_training_code_are_not_resumed(tmp_path, base, tiny_data, tiny_config, caplog,
                                                            monkeypatch):
    """A changed default or fixed bug in the training code, then a rerun: the old checkpoints are not resumed."""
    from selectbench.training import train as train_module

    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    cfg["finetune"]["checkpoints"] = 2
    _killed_finetune(monkeypatch, _StopAfterFirstCheckpoint(), tiny_data, base, list(range(64)), cfg, 0, tmp_path, 1)
    monkeypatch.setattr(train_module, "code_digest", lambda: "other code")
    with caplog.at_level("INFO"):
        finetune(tiny_data, base, list(range(64)), cfg, 0, tmp_path, 1)
    assert not any("resuming from" in r.message for r in caplog.records)
    assert any("come from another run" in r.message for r in caplog.records)


def test_a_fresh_run_warns_about_nothing(tmp_path, base, tiny_data, tiny_config, caplog):
    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    with caplog.at_level("WARNING"):
        finetune(tiny_data, base, list(range(32)), cfg, 0, tmp_path, 1)
    assert not any("another run" in r.message for r in caplog.records)

def test_lora_initialisation_does_not_depend_on_the_random_state(base):
    from selectbench.training.train import apply_lora

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    adapters = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever ran before (torch's default seed differs between processes)
        model = apply_lora(load_model(base / "model")[0], lora, seed=0)
        adapters.append({n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n})
    assert adapters[0] and all(torch.equal(adapters[0][n], adapters[1][n]) for n in adapters[0])


class _Interrupt(Exception):
    pass


class _StopAfterFirstCheckpoint:
    """A TrainerCallback that kills the run right after its first checkpoint is written."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def on_save(self, args, state, control, **kwargs):
        raise _Interrupt(f"interrupted after step {state.global_step}")


def _killed_finetune(monkeypatch, stopper, *args):
    """finetune(*args), interrupted by a TrainerCallback `stopper` that raises _Interrupt (as a kill would)."""
    from selectbench.training import train as train_module

    real = train_module.train
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "train", lambda *a, **kw: real(*a, **kw, callbacks=[stopper]))
        with pytest.raises(_Interrupt):
            finetune(*args)


LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.mark.parametrize("mode", ["lora", "full", "lora-recipe-bf16", "full-bf16"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, request, tiny_data, tiny_config, caplog, monkeypatch,
                                                     mode):
    """Killed right after its first checkpoint, a rerun resumes there and ends on the uninterrupted run's weights:
    the tiny built model (full, LoRA) and an assembled one stored in bfloat16 (LLaVA's LoRA recipe; full)."""

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    if mode.endswith("bf16"):
        base = request.getfixturevalue("pretrained_base")
        cfg = {"pretrained": {"dtype": "bfloat16"}, "template": {"system": "A chat."},
               "finetune": {**{k: v for k, v in RECIPE.items() if k != "save_steps"}, "checkpoints": 3}}
        if mode == "full-bf16":
            cfg["finetune"].update({"finetune": "full", "lr": 1e-3})
    else:
        base = request.getfixturevalue("base")
        cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
        cfg["finetune"].update({"finetune": mode, "checkpoints": 3, "lr": 1e-2, "batch_size": 8})
        if mode == "lora":
            cfg["finetune"].update({"lora": LORA, "projector_lr": 3e-3})
    rows = list(range(48))  # 6 steps of 8 examples, a checkpoint every 2
    finetune(tiny_data, base, rows, cfg, 0, tmp_path / "straight", 1)

    _killed_finetune(monkeypatch, _StopAfterFirstCheckpoint(), tiny_data, base, rows, cfg, 0, tmp_path / "resumed", 1)
    assert [p.name for p in checkpoint_dirs(tmp_path / "resumed")] == ["checkpoint-2"]
    assert not (tmp_path / "resumed" / "model").exists()
    with caplog.at_level("INFO"):
        finetune(tiny_data, base, rows, cfg, 0, tmp_path / "resumed", 1)
    assert any("resuming from" in r.message and "checkpoint-2" in r.message for r in caplog.records)
    straight, resumed = _weights(tmp_path / "straight" / "model"), _weights(tmp_path / "resumed" / "model")
    assert set(straight) == set(resumed)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), \
        [k for k in straight if not torch.equal(straight[k], resumed[k])][:5]
    # the summary too: the mean loss over every step, not only those run after the resume
    summaries = [json.loads((tmp_path / run / "train_summary.json").read_text()) for run in ("straight", "resumed")]
    assert summaries[0]["train_loss"] == summaries[1]["train_loss"] > 0
    assert summaries[0]["loss_log"] == summaries[1]["loss_log"]



class _StopAfterSecondCheckpoint(_StopAfterFirstCheckpoint):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= 4:
            raise _Interrupt(f"interrupted after step {state.global_step}")


def test_resume_state_last_keeps_weights_everywhere_and_resumes_exactly(tmp_path, tiny_data, tiny_config, base,
                                                                       monkeypatch):
    """resume_state: last (the paper proxy's ~100 trajectory points): older checkpoints keep their weights but
    not the optimizer state, the newest keeps both, and a run killed after its second checkpoint resumes to the
    uninterrupted run's weights."""
    from selectbench.training.train import RESUME_ONLY_FILES

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    cfg["finetune"].update({"finetune": "full", "checkpoints": 3, "lr": 1e-2, "batch_size": 8,
                            "resume_state": "last"})
    rows = list(range(48))  # 6 steps of 8 examples, a checkpoint every 2

    def resume_files(run):
        return [sorted(f.name for pattern in RESUME_ONLY_FILES for f in d.glob(pattern))
                for d in checkpoint_dirs(run)]

    finetune(tiny_data, base, rows, cfg, 0, tmp_path / "straight", 1)
    assert [p.name for p in checkpoint_dirs(tmp_path / "straight")] == ["checkpoint-2", "checkpoint-4",
                                                                        "checkpoint-6"]
    kept = resume_files(tmp_path / "straight")
    assert kept[0] == kept[1] == [] and {"optimizer.pt", "scheduler.pt"} <= set(kept[2])
    for d in checkpoint_dirs(tmp_path / "straight"):  # every trajectory point still loads as a model
        assert list(d.glob("*.safetensors"))

    _killed_finetune(monkeypatch, _StopAfterSecondCheckpoint(), tiny_data, base, rows, cfg, 0, tmp_path / "resumed", 1)
    assert resume_files(tmp_path / "resumed")[0] == [] and resume_files(tmp_path / "resumed")[1]
    finetune(tiny_data, base, rows, cfg, 0, tmp_path / "resumed", 1)
    straight, resumed = _weights(tmp_path / "straight" / "model"), _weights(tmp_path / "resumed" / "model")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)

def test_all_linear_lora_wraps_every_language_model_linear_and_nothing_else(vicuna_dir, clip_dir, projector_file):
    from selectbench.models.assemble import assemble_llava
    from selectbench.training.train import apply_lora, lora_targets
    from tests.models.conftest import pretrained_cfg

    model, _, _ = assemble_llava(pretrained_cfg(vicuna_dir, clip_dir, projector_file))
    assert lora_targets(model, "all-linear") == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                                 "v_proj"]  # CLIP's q/k/v/out_proj, fc1/2 and lm_head are left out
    with pytest.raises(ValueError, match="target_modules"):
        lora_targets(model, "q_proj")
    wrapped = {name for name, module in apply_lora(model, LORA).named_modules() if hasattr(module, "lora_A")}
    layers = model.config.text_config.num_hidden_layers
    assert len(wrapped) == 7 * layers and all(".language_model.layers." in name for name in wrapped)
    model, _, _ = assemble_llava(pretrained_cfg(vicuna_dir, clip_dir, projector_file))
    peft = apply_lora(model, {**LORA, "target_modules": ["q_proj", "v_proj"]})
    wrapped = {name.rsplit(".", 1)[-1] for name, module in peft.named_modules() if hasattr(module, "lora_A")}
    assert wrapped == {"q_proj", "v_proj"}
    trainable = {name for name, param in peft.named_parameters() if param.requires_grad}
    assert trainable and all("lora_" in name or "multi_modal_projector.modules_to_save" in name for name in trainable)


def test_global_batch_sets_gradient_accumulation_per_process(monkeypatch):
    from selectbench.training.train import grad_accum_steps

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert grad_accum_steps({"batch_size": 16, "global_batch": 128}) == 8
    assert grad_accum_steps({"batch_size": 16, "grad_accum": 3}) == 3
    monkeypatch.setenv("WORLD_SIZE", "8")  # torchrun / accelerate on 8 GPUs
    assert grad_accum_steps({"batch_size": 16, "global_batch": 128}) == 1
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="not a multiple"):
        grad_accum_steps({"batch_size": 16, "global_batch": 128})
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="contradicts"):
        grad_accum_steps({"batch_size": 16, "global_batch": 128, "grad_accum": 2})


def test_which_checkpoints_are_kept():
    from selectbench.training.train import _save_total_limit

    assert _save_total_limit({"checkpoints": 5}) is None               # the proxy: every trajectory point
    assert _save_total_limit({"save_steps": 200}) == 1                 # a target: the last one, to resume
    assert _save_total_limit({"save_steps": 200, "keep_checkpoints": "all"}) is None  # the released XMAS cadence
    assert _save_total_limit({"checkpoints": 5, "keep_checkpoints": 2}) == 2


@pytest.fixture(scope="module")
def pretrained_base(tmp_path_factory, tiny_data, vicuna_dir, clip_dir, projector_file):
    from tests.models.conftest import pretrained_cfg

    out = tmp_path_factory.mktemp("pretrained_base")
    cfg = {"pretrained": pretrained_cfg(vicuna_dir, clip_dir, projector_file, dtype="bfloat16"),
           "template": {"system": "A chat."}}
    train_base(tiny_data, None, cfg, 0, out, 1)
    return out


RECIPE = {"finetune": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": "all-linear"},
          "trainable": ["projector", "language_model"], "projector_lr": 2e-3, "lr": 1e-2, "epochs": 1,
          "batch_size": 4, "global_batch": 8, "warmup_ratio": 0.03, "weight_decay": 0.0, "scheduler": "cosine",
          "bf16": True, "gradient_checkpointing": True, "group_by_length": True, "save_steps": 2}


def test_llava_lora_recipe_on_an_assembled_model(tmp_path, pretrained_base, tiny_data, monkeypatch):
    from safetensors import safe_open
    from transformers import AutoProcessor

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = {"pretrained": {"dtype": "bfloat16"}, "template": {"system": "A chat."}, "finetune": RECIPE}
    summary = finetune(tiny_data, pretrained_base, list(range(32)), cfg, 0, tmp_path, 1)
    assert summary["steps"] == 4 and np.isfinite(summary["train_loss"])  # 32 examples / global batch 8
    before, after = _weights(pretrained_base / "model"), _weights(tmp_path / "model")
    assert set(before) == set(after)  # LoRA merged before publishing
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    linear = {k for k in before if k.startswith("model.language_model.layers.") and k.endswith("proj.weight")}
    assert linear and linear <= changed  # every linear of the LLM (attention and MLP) moved
    assert {k for k in changed if k.startswith("model.multi_modal_projector.")}
    assert not changed - linear - {k for k in before if k.startswith("model.multi_modal_projector.")}
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as stored:  # stored as configured
        assert {stored.get_slice(k).get_dtype() for k in stored.keys()} == {"BF16"}
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    assert "USER: " in processor.chat_template and processor.tokenizer.chat_template == processor.chat_template


def test_gradient_checkpointing_does_not_change_lora_training(tmp_path, pretrained_base, tiny_data, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = {"template": {"system": "A chat."},
           "finetune": {**RECIPE, "bf16": False, "lora": {**RECIPE["lora"], "dropout": 0.0}}}
    weights = []
    for checkpointing in (True, False):
        cfg["finetune"]["gradient_checkpointing"] = checkpointing
        finetune(tiny_data, pretrained_base, list(range(16)), cfg, 0, tmp_path / str(checkpointing), 1)
        weights.append(_weights(tmp_path / str(checkpointing) / "model"))
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])
    assert not all(torch.equal(weights[0][k], v) for k, v in _weights(pretrained_base / "model").items())


def test_checkpoints_of_an_assembled_model_load_with_their_processors(tmp_path, pretrained_base, tiny_data):
    from selectbench.models.build import load_checkpoint

    cfg = {"pretrained": {"dtype": "bfloat16"}, "template": {"system": "A chat."},
           "finetune": {"finetune": "full", "trainable": ["projector", "language_model"], "lr": 1e-3, "epochs": 1,
                        "batch_size": 8, "checkpoints": 2}}
    finetune(tiny_data, pretrained_base, list(range(16)), cfg, 0, tmp_path, 1)
    model, tokenizer, processor = load_checkpoint(checkpoint_dirs(tmp_path)[-1])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    assert processor.do_pad  # the run's published image processor (LLaVA's pad-to-square)
