"""LESS-style gradients: batched per-example gradients equal one backward per example; warm-up keeps the
adapter and Adam state; projection and preconditioning as specified; shard invariance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selectbench.features import ShardJob
from selectbench.embedded.dataset import EVAL_BUILDERS

BENCHMARKS = tuple(EVAL_BUILDERS)
from selectbench.features.gradients import (PerExampleGradients, RademacherProjection, adam_direction,
                                            extract_shard, load_warm_model, per_example_losses_sum, run_warmup,
                                            validation_batches, warmup_start)
from selectbench.features.passes import shard_batches_for
from selectbench.features.sharding import gather

WARMUP = {"fraction": 0.2, "epochs": 1, "lr": 1e-3, "lora_r": 4, "seed": 0}


@pytest.fixture(scope="module")
def warm(tmp_path_factory, tiny_data, tiny_config, proxy_run):
    out = tmp_path_factory.mktemp("warm")
    model = warmup_start(WARMUP, base_dir=proxy_run["model_dir"].parent)
    summary = run_warmup(tiny_data, model, tiny_config["models"]["proxy"], WARMUP, out / "warmup")
    assert summary["rows"] == round(0.2 * len(tiny_data.pool))
    pointer = out / "warmup.json"
    pointer.write_text(json.dumps({"model": str(model), "warmup": str(out / "warmup")}))
    return {"pointer": pointer, "model": model, "dir": out / "warmup"}


def test_warmup_keeps_adapter_and_adam_state_for_every_lora_parameter(warm):
    model, _, _, adam = load_warm_model(warm["model"], warm["dir"])
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n in lora)
    assert set(lora) == set(adam)
    assert all((adam[n]["exp_avg_sq"] >= 0).all() and adam[n]["step"] > 0 for n in lora)


def test_batched_per_example_gradients_equal_one_backward_each(warm, tiny_data, tiny_config):
    model, *_ = load_warm_model(warm["model"], warm["dir"])
    _, batches = shard_batches_for(tiny_data, warm["model"], tiny_config["models"]["proxy"],
                                   range(len(tiny_data.pool)), 0, 1, 6)
    batch = next(b for b in batches if (b["attention_mask"] == 0).any() and "pixel_values" in b)
    hooks = PerExampleGradients(model)
    model.zero_grad()
    per_example_losses_sum(model, batch).backward()
    batched = hooks.per_example()
    hooks.close()
    params = dict(model.named_parameters())
    for b in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][b].sum())
        has_image = bool((batch["input_ids"][b] == model.config.image_token_id).any())
        image_index = int(sum(bool((batch["input_ids"][i] == model.config.image_token_id).any())
                              for i in range(b)))
        single = {"input_ids": batch["input_ids"][b:b + 1, :n], "attention_mask": batch["attention_mask"][b:b + 1, :n],
                  "labels": batch["labels"][b:b + 1, :n]}
        if has_image:
            single["pixel_values"] = batch["pixel_values"][image_index:image_index + 1]
        model.zero_grad()
        per_example_losses_sum(model, single).backward()
        for name, grad in batched.items():
            torch.testing.assert_close(grad[b], params[name].grad, atol=1e-5, rtol=1e-4)


def test_projection_is_seeded_rademacher_and_blockwise():
    x = torch.randn(3, 40)
    p = RademacherProjection(40, 8, seed=1, block=16)
    q = RademacherProjection(40, 8, seed=1, block=16, cache_bytes=0)  # regenerated per call
    torch.testing.assert_close(p(x), q(x))
    full = torch.cat([p._block(i, "cpu") for i in range(3)]).float()
    assert set(full.unique().tolist()) == {-1.0, 1.0} and full.shape == (40, 8)
    torch.testing.assert_close(p(x), x @ full / np.sqrt(8))
    assert not torch.equal(p(x), RademacherProjection(40, 8, seed=2, block=16)(x))


def test_adam_direction_matches_less():
    g, m, v = torch.tensor([[1.0, -2.0]]), torch.tensor([0.5, 0.0]), torch.tensor([0.25, 1.0])
    m2 = 0.9 * m + 0.1 * g
    v2 = 0.999 * v + 0.001 * g * g
    torch.testing.assert_close(adam_direction(g, m, v), m2 / (v2.sqrt() + 1e-8))


SPEC = {"dim": 16, "chunk_batches": 2}


@pytest.fixture(scope="module")
def gathered(tmp_path_factory, warm, tiny_data, tiny_config):
    """The feature extracted with 1 and with 2 shards: {n: (gathered path, arrays)}."""
    tmp = tmp_path_factory.mktemp("gathered")

    def run(n):
        files = [tmp / f"n{n}_s{i}.npz" for i in range(n)]
        for i, f in enumerate(files):
            extract_shard(ShardJob(tiny_data, {"gradient_warmup": warm["pointer"]}, SPEC,
                                   tiny_config["models"]["proxy"], i, n, 8, f, device="cpu"))
        return tmp / f"n{n}.npz", gather(files, len(tiny_data.pool), tmp / f"n{n}.npz")

    return {1: run(1), 2: run(2)}


def test_gathered_features_do_not_depend_on_the_shard_count(gathered, tiny_data):
    (_, one), (_, two) = gathered[1], gathered[2]
    assert one["covered"].all() and one["projected"].shape == (len(tiny_data.pool), 1, 16)
    assert (one["grad_norm"] > 0).all()
    for key in ("projected", "grad_norm", "meta_validation_projected", "meta_validation_task", "meta_validation_id"):
        np.testing.assert_array_equal(one[key], two[key])


def _plain_gradient(model, batch) -> torch.Tensor:
    """One example's LoRA gradient from a plain backward (no hooks), flattened in parameter order."""
    model.zero_grad(set_to_none=True)
    per_example_losses_sum(model, batch).backward()
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.requires_grad])


def test_validation_target_equals_a_direct_recomputation(gathered, warm, tiny_data, tiny_config):
    """LESS's influence: pool gradients Adam-preconditioned, validation gradients plain SGD, both projected
    with the same Rademacher matrix, cosine, mean per task, max over tasks, recomputed here for a handful
    of pool rows with one plain backward per example."""
    from selectbench.models.conversation import make_template
    from selectbench.selection.base import Context
    from selectbench.selection.registry import discover, expand

    path, arrays = gathered[1]
    model, tokenizer, processor, adam = load_warm_model(warm["model"], warm["dir"])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    m = torch.cat([adam[n]["exp_avg"].flatten() for n in names])
    v = torch.cat([adam[n]["exp_avg_sq"].flatten() for n in names])
    projection = RademacherProjection(len(m), SPEC["dim"], seed=0)

    template = make_template(tokenizer, model, tiny_config["models"]["proxy"]["template"])
    tasks, ids, val_batches = validation_batches(tiny_data, tokenizer, processor, template, 1)
    assert list(dict.fromkeys(tasks)) == tiny_data.validation_tasks() and len(ids) == 8 * len(BENCHMARKS)
    val = torch.cat([projection(_plain_gradient(model, b)[None]) for b in val_batches])
    torch.testing.assert_close(torch.from_numpy(arrays["meta_validation_projected"]), val, atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(arrays["meta_validation_id"], ids)

    text_only = next(r for r, rec in enumerate(tiny_data.pool) if "image" not in rec)
    rows = [0, 7, 100, text_only, len(tiny_data.pool) - 1]
    order, batches = shard_batches_for(tiny_data, warm["model"], tiny_config["models"]["proxy"], rows,
                                       0, 1, 1)
    train = {int(r): projection(adam_direction(_plain_gradient(model, b)[None], m, v))[0].numpy()
             for r, b in zip(order, batches)}
    unit_val = val.numpy() / np.linalg.norm(val.numpy(), axis=1, keepdims=True)
    expected = {r: max(float((g / np.linalg.norm(g)) @ unit_val[tasks == t].T.mean(axis=1))
                       for t in dict.fromkeys(tasks)) for r, g in train.items()}

    cls = discover(str(Path(__file__).resolve().parents[2] / "methods"))["gradient"]
    params = expand({"gradient": {"target": "validation", "dim": SPEC["dim"]}}, {"gradient": cls})[0].param_dict
    scores = cls().score(Context("digits", tiny_data.pool, tiny_data.image_root, {"lora_gradients": path}, params))
    for r in rows:
        assert scores["score"][r] == pytest.approx(expected[r], abs=1e-4)
    assert {k for k in scores if k.startswith("task_score_")} == {f"task_score_{b}" for b in BENCHMARKS}



def test_warmup_starts_from_the_configured_proxy_checkpoint(tmp_path, tiny_data, tiny_config, proxy_run,
                                                            monkeypatch):
    """gradient_warmup.start: proxy_checkpoint trains from that checkpoint of the proxy fine-tune (its connector
    trained), not from the base; the pointer the gradient pass reads names those weights."""
    import selectbench.training.train as training
    from selectbench.models.build import load_checkpoint

    spec = {**WARMUP, "start": "proxy_checkpoint", "checkpoint": 1}
    start = warmup_start(spec, proxy_run["model_dir"].parent, proxy_run["listing"])
    assert start == Path(proxy_run["checkpoints"][1])
    assert warmup_start({**spec, "checkpoint": 0}, None, proxy_run["listing"]) == Path(proxy_run["checkpoints"][0])
    assert warmup_start(WARMUP, proxy_run["model_dir"].parent, proxy_run["listing"]) == proxy_run["model_dir"]
    with pytest.raises(ValueError, match="out of range"):
        warmup_start({**spec, "checkpoint": 3}, None, proxy_run["listing"])

    seen = {}

    class Stop(Exception):
        pass

    def fake_train(model, *args, **kwargs):
        seen["embed"] = model.get_input_embeddings().weight.detach().clone()
        raise Stop

    monkeypatch.setattr(training, "train", fake_train)
    with pytest.raises(Stop):
        run_warmup(tiny_data, start, tiny_config["models"]["proxy"], spec, tmp_path / "warmup")
    want = load_checkpoint(proxy_run["checkpoints"][1], with_processors=False).get_input_embeddings().weight
    base = load_checkpoint(proxy_run["model_dir"], with_processors=False).get_input_embeddings().weight
    assert not torch.equal(want, base), "the fixture's checkpoints differ from the base"
    torch.testing.assert_close(seen["embed"], want, rtol=0, atol=0)


def test_a_batch_of_several_gives_the_features_of_batch_one(tmp_path, gathered, warm, tiny_data, tiny_config):
    """The gradient pass's batch size (features.gradient_batch_size) does not change an example's features:
    padding enters no example's gradient."""
    out = tmp_path / "b1.npz"
    extract_shard(ShardJob(tiny_data, {"gradient_warmup": warm["pointer"]}, {**SPEC, "chunk_batches": 1000},
                           tiny_config["models"]["proxy"], 0, 1, 1, out, device="cpu"))
    one = gather([out], len(tiny_data.pool), tmp_path / "b1_gathered.npz")
    _, eight = gathered[1]
    # float32 sums in another order: each row agrees to 1.1e-6 of its norm (measured; single small coordinates
    # carry cancellation error of that absolute size)
    rows = np.linalg.norm(one["projected"] - eight["projected"], axis=-1) / np.linalg.norm(eight["projected"], axis=-1)
    assert rows.max() < 1e-5
    np.testing.assert_allclose(one["grad_norm"], eight["grad_norm"], rtol=1e-5)


def test_projection_blocks_are_drawn_on_the_device_of_the_gradients(monkeypatch):
    """Each block of P comes from a generator on x's device (a paper-scale P is redrawn for every batch: drawn on
    the CPU and copied, it would dominate the pass); on a CPU the draws are those of torch's CPU generator."""
    devices = []
    real = torch.Generator

    def spy(*args, **kwargs):
        devices.append(torch.device(kwargs["device"]) if "device" in kwargs else None)
        return real(*args, **kwargs)

    x = torch.randn(2, 40)
    want = torch.cat([torch.randint(0, 2, (min(16, 40 - i * 16), 8), generator=real().manual_seed(3 * 1_000_003 + i),
                                    dtype=torch.int8) * 2 - 1 for i in range(3)]).float()
    monkeypatch.setattr(torch, "Generator", spy)
    got = RademacherProjection(40, 8, seed=3, block=16, cache_bytes=0)(x)
    monkeypatch.undo()
    assert devices == [x.device] * 3, "one generator per block, on the gradients' device"
    torch.testing.assert_close(got, x @ want / np.sqrt(8))


def test_the_gradient_pass_loads_the_configured_dtype(tmp_path, warm, tiny_data, tiny_config, gathered):
    """features.dtype: the start weights in half precision, the LoRA weights (the differentiated parameters) in
    float32; the feature file records the dtype and stays close to the float32 pass."""
    model, *_ = load_warm_model(warm["model"], warm["dir"], dtype=torch.bfloat16)
    q_proj = model.base_model.model.model.language_model.layers[0].self_attn.q_proj
    assert q_proj.base_layer.weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    out = tmp_path / "bf16.npz"
    extract_shard(ShardJob(tiny_data, {"gradient_warmup": warm["pointer"]}, SPEC, tiny_config["models"]["proxy"], 0,
                           1, 8, out, device="cpu", dtype="bfloat16"))
    half = gather([out], len(tiny_data.pool), tmp_path / "bf16_gathered.npz")
    _, ref = gathered[1]
    assert str(half["meta_dtype"]) == "bfloat16" and str(ref["meta_dtype"]) == "float32"
    cos = (half["projected"][:, 0] * ref["projected"][:, 0]).sum(1) / (
        np.linalg.norm(half["projected"][:, 0], axis=1) * np.linalg.norm(ref["projected"][:, 0], axis=1))
    # measured: cosine ≥ 0.99984 (median 0.99998), gradient norms within 0.4%
    assert cos.min() > 0.999
    np.testing.assert_allclose(half["grad_norm"], ref["grad_norm"], rtol=2e-2)
