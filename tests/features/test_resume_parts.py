"""A killed shard job resumes from its finished parts only when nothing that determines them has changed."""

import json
import os

import numpy as np
import pytest

from selectbench.features import ShardJob, job_fingerprint
from selectbench.features.sharding import claim_parts, parts_dir, run_parts


class _Killed(Exception):
    pass


def _run(work, parts, fingerprint, calls, kill_after=None):
    claim_parts(work, fingerprint)

    def compute(part):
        if kill_after is not None and len(calls) == kill_after:
            raise _Killed(part)
        calls.append(part)
        return {"value": np.array([float(len(part)), float(fingerprint == "B")])}

    return run_parts(parts, compute, work)


def test_parts_of_another_configuration_are_recomputed(tmp_path, caplog):
    work = parts_dir(tmp_path / "shard0-of-2.npz")
    parts, calls = ["ckpt/checkpoint-2", "ckpt/checkpoint-4"], []
    with pytest.raises(_Killed):
        _run(work, parts, "A", calls, kill_after=1)           # killed after its first part
    assert calls == ["ckpt/checkpoint-2"]
    calls.clear()
    _run(work, parts, "A", calls)                             # same job: resumes
    assert calls == ["ckpt/checkpoint-4"]
    calls.clear()
    with caplog.at_level("WARNING"):
        done = _run(work, parts, "B", calls)                  # another proxy, same checkpoint paths: all again
    assert calls == parts and all(done[p]["value"][1] == 1.0 for p in parts)
    assert any("computed from other inputs, settings or code" in r.message for r in caplog.records)
    (work / "job.json").unlink()                              # parts of unknown origin are not trusted either
    calls.clear()
    _run(work, parts, "B", calls)
    assert calls == parts


def test_the_fingerprint_covers_inputs_settings_and_code(tmp_path, tiny_data, monkeypatch):
    checkpoint = tmp_path / "finetune" / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights of one proxy")
    listing = tmp_path / "checkpoints.json"
    listing.write_text(json.dumps([str(checkpoint)]))
    job = ShardJob(tiny_data, {"proxy_checkpoints": listing}, {"k": 5}, {"template": {}}, 0, 2, 16,
                   tmp_path / "shard0-of-2.npz")
    base = job_fingerprint(job, "attention_trajectories")
    assert job_fingerprint(job, "attention_trajectories") == base
    variants = [job_fingerprint(ShardJob(**{**job.__dict__, **change}), "attention_trajectories")
                for change in ({"spec": {"k": 3}}, {"dtype": "bfloat16"}, {"shard": 1}, {"batch_size": 8},
                               {"model_cfg": {"template": {"bos": False}}})]
    assert base not in variants and len(set(variants)) == len(variants)
    (checkpoint / "model.safetensors").write_bytes(b"weights of another proxy")   # same path, retrained
    stamp = checkpoint / "model.safetensors"
    os.utime(stamp, ns=(stamp.stat().st_atime_ns, stamp.stat().st_mtime_ns + 1))
    retrained = job_fingerprint(job, "attention_trajectories")
    assert retrained != base
    import selectbench.versions as versions

    monkeypatch.setattr(versions, "source_digest", lambda *packages: "other code")
    assert job_fingerprint(job, "attention_trajectories") != retrained
