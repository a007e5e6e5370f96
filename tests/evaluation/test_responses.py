"""The per-sample store behind lmms-eval's response-cache hook, without lmms-eval: what a killed run leaves is
reused, the rest asked of the model in the same chunks as an uninterrupted run, and a store written for another
model is never read. (The real harness resuming a killed run: tests/evaluation/test_lmms_harness.py.)"""

import json
from types import SimpleNamespace

import pytest

from selectbench.evaluation import responses
from selectbench.evaluation.responses import ResponseStore, prepare


class Model:
    """Answers a request with its document id; records the chunks it is asked."""

    def __init__(self):
        self.calls = []

    def generate_until(self, requests):
        self.calls.append([r.doc_id for r in requests])
        return [f"answer {r.doc_id}" for r in requests]

    def loglikelihood(self, requests):
        self.calls.append([r.doc_id for r in requests])
        return [(-0.5 * r.doc_id, False) for r in requests]


def _requests(n, task="vqav2_val", reqtype="generate_until"):
    settings = {"max_new_tokens": 16, "temperature": 0, "until": ["\n"]}
    args = (lambda i: (f"question {i}", settings, None, i, task, "val")) if reqtype == "generate_until" else \
        (lambda i: (f"question {i}", f" option {i}", None, i, task, "val"))
    return [SimpleNamespace(args=args(i), task_name=task, doc_id=i, idx=0) for i in range(n)]


IDENTITY = {"model": "llava_hf", "model_args": "pretrained=/m,device_map=auto", "model_files": "abc",
            "lmms_eval": "0.7.3"}


def test_a_killed_run_is_resumed_chunk_by_chunk(tmp_path, monkeypatch):
    monkeypatch.setenv(responses.CHUNK_ENV, "4")
    folder = tmp_path / "r0.1_s0.vqav2_val.responses"
    requests = _requests(10)
    prepare(folder, IDENTITY)
    whole_model = Model()
    whole = ResponseStore(folder).execute(whole_model, "generate_until", requests)
    assert whole_model.calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert whole == [f"answer {i}" for i in range(10)]

    # as a kill leaves it: six answers written, the seventh cut short
    lines = (folder / "responses.rank0.jsonl").read_text().splitlines(keepends=True)
    (folder / "responses.rank0.jsonl").write_text("".join(lines[:6]) + lines[6][:25])
    assert prepare(folder, IDENTITY) == 6
    model = Model()
    store = ResponseStore(folder)
    assert store.execute(model, "generate_until", requests) == whole
    assert model.calls == [[4, 5, 6, 7], [8, 9]]  # the first chunk reused; a partly stored chunk asked again whole
    assert (store.reused, store.computed) == (4, 6)
    again = Model()
    assert ResponseStore(folder).execute(again, "generate_until", requests) == whole and again.calls == []


def test_loglikelihoods_come_back_as_the_model_gave_them(tmp_path):
    folder = tmp_path / "store"
    prepare(folder, IDENTITY)
    requests = _requests(3, "mmbench_en_dev", "loglikelihood")
    first = ResponseStore(folder).execute(Model(), "loglikelihood", requests)
    model = Model()
    second = ResponseStore(folder).execute(model, "loglikelihood", requests)
    assert model.calls == [] and second == first and all(isinstance(x, tuple) for x in second)
    assert str(second[1]) == str(first[1])  # lmms-eval logs str() of a (value, is_greedy) pair


def test_empty_answers_are_asked_again(tmp_path):
    folder = tmp_path / "store"
    prepare(folder, IDENTITY)
    failing = Model()
    failing.generate_until = lambda reqs: ["" for _ in reqs]   # llava_hf answers "" when generation fails
    ResponseStore(folder).execute(failing, "generate_until", _requests(2))
    model = Model()
    assert ResponseStore(folder).execute(model, "generate_until", _requests(2)) == ["answer 0", "answer 1"]
    assert model.calls == [[0, 1]]


@pytest.mark.parametrize("change", [{"model_files": "retrained"}, {"model_args": "pretrained=/m,dtype=float16"},
                                    {"lmms_eval": "0.8.0"}])
def test_a_store_of_another_model_or_setting_is_never_read(tmp_path, change):
    folder = tmp_path / "store"
    prepare(folder, IDENTITY)
    ResponseStore(folder).execute(Model(), "generate_until", _requests(3))
    assert prepare(folder, {**IDENTITY, **change}) == 0
    model = Model()
    ResponseStore(folder).execute(model, "generate_until", _requests(3))
    assert model.calls == [[0, 1, 2]]
    assert json.loads((folder / "identity.json").read_text())["model_files"] == {**IDENTITY, **change}["model_files"]


def test_the_prompt_the_settings_and_the_task_are_part_of_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv(responses.CHUNK_ENV, "1")
    folder = tmp_path / "store"
    prepare(folder, IDENTITY)
    ResponseStore(folder).execute(Model(), "generate_until", _requests(2))
    other_prompt = _requests(2)
    other_prompt[0].args = ("another question",) + other_prompt[0].args[1:]
    longer = _requests(2)
    longer[1].args = (longer[1].args[0], {"max_new_tokens": 64, "temperature": 0}) + longer[1].args[2:]
    for requests, asked in ((other_prompt, [[0]]), (longer, [[1]]), (_requests(2, "gqa"), [[0], [1]])):
        model = Model()
        ResponseStore(folder).execute(model, "generate_until", requests)
        assert model.calls == asked
    changed = ResponseStore(folder, task_fingerprints={"vqav2_val": "edited yaml"})
    model = Model()
    changed.execute(model, "generate_until", _requests(2))
    assert model.calls == [[0], [1]]
