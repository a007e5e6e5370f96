"""Our trained model as an lmms-eval model: load_model, the VicunaV1 template and predict.generate /
predict.loglikelihoods behind lmms-eval's model interface, so the real harness can evaluate it.

Run as a module, this is lmms-eval's own command line with the model registered under the name "selectbench":
``python -m selectbench.evaluation.lmms_model --model selectbench --model_args pretrained=DIR,template=FILE ...``
(for any other model, such as llava_hf, it behaves as ``python -m lmms_eval``, and records MMBench's random-letter
fallbacks where the suite asks for them: record_judge_fallbacks; where the suite names a store, every answer goes
to the suite's per-sample store instead of lmms-eval's response cache: selectbench.evaluation.responses).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from lmms_eval.api.model import lmms
from lmms_eval.api.registry import register_model
from lmms_eval.models.registry_v2 import ModelManifest

from selectbench.data.images import ImageLoader, expand_to_square
from selectbench.evaluation.predict import generate, loglikelihoods
from selectbench.models.build import load_model
from selectbench.models.conversation import make_template

NAME = "selectbench"
# the module's import path, also when it runs as __main__ (lmms-eval imports the class from it)
MANIFEST = ModelManifest(model_id=NAME, simple_class_path="selectbench.evaluation.lmms_model.SelectbenchLmms")


class InMemoryImages(ImageLoader):
    """ImageLoader for images lmms-eval hands over as PIL images: the same square padding and processor."""

    def __init__(self, image_processor):
        super().__init__(Path("."), image_processor)

    def load(self, image, record_id: str | None = None):
        return expand_to_square(image.convert("RGB"), self.fill)


@register_model(NAME)
class SelectbenchLmms(lmms):
    """model_args: pretrained (a model directory saved by save_model), template (a JSON file with the template
    block of the model config: system, max_length), batch_size, threads.

    Greedy generation only. loglikelihood returns (sum of log p(continuation | context), None): a log-probability
    as lmms-eval's interface documents (higher is better), and is_greedy is not computed (None fails loudly if a
    task uses it). Note that lmms-eval's default multiple_choice scoring takes the argmin, as its own llava_hf
    returns a loss: tasks scored with this model rank options in their own process_results."""

    is_simple = True

    def __init__(self, pretrained: str, template: str | None = None, batch_size: int | str = 16,
                 threads: int | str = 1, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(f"{NAME}: unexpected model_args {sorted(kwargs)} (known: pretrained, template, "
                             "batch_size, threads)")
        template_cfg = json.loads(Path(template).read_text()) if template else {}
        self.model, self.tokenizer, processor = load_model(Path(pretrained), int(threads))
        self.template = make_template(self.tokenizer, self.model, template_cfg)
        self.images = InMemoryImages(processor)
        self.batch_size = int(batch_size)

    def _item(self, context: str, doc_to_visual, doc_id: int, task: str, split: str) -> dict:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual else []
        if len(visuals) > 1:
            raise ValueError(f"{NAME}: {task} doc {doc_id} has {len(visuals)} images; the model takes one")
        item = {"question": context, "id": f"{task}/{doc_id}"}
        if visuals:
            item["image"] = visuals[0]
        return item

    def generate_until(self, requests) -> list[str]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        settings = {}
        for i, req in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            gen_kwargs = dict(gen_kwargs)
            if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0:
                raise ValueError(f"{NAME}: {task} asks for sampling ({gen_kwargs}); the model generates greedily")
            if "max_new_tokens" not in gen_kwargs:
                raise ValueError(f"{NAME}: {task} sets no max_new_tokens")
            until = gen_kwargs.get("until") or []
            key = (task, int(gen_kwargs["max_new_tokens"]), tuple([until] if isinstance(until, str) else until))
            groups[key].append(i)
            settings[i] = (context, doc_to_visual, doc_id, task, split)
        out: list[str | None] = [None] * len(requests)
        for (task, max_new_tokens, until), idx in groups.items():
            items = [self._item(*settings[i]) for i in idx]
            answers = generate(self.model, self.tokenizer, self.template, self.images, items, self.batch_size,
                               max_new_tokens, desc=task)
            for i, answer in zip(idx, answers):
                for stop in until:
                    answer = answer.split(stop)[0] if stop else answer
                out[i] = answer
        return out

    def loglikelihood(self, requests) -> list[tuple[float, None]]:
        items = []
        for req in requests:
            context, continuation, doc_to_visual, doc_id, task, split = req.args
            if callable(continuation):
                continuation = continuation(self.task_dict[task][split][doc_id])
            items.append({**self._item(context, doc_to_visual, doc_id, task, split), "continuation": continuation})
        scores = loglikelihoods(self.model, self.tokenizer, self.template, self.images, items, self.batch_size)
        return [(score, None) for score in scores]

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"{NAME}: multi-round generation is not supported")


def register() -> None:
    """Make "selectbench" resolvable by name in lmms-eval's model registry (the one simple_evaluate and the CLI
    use)."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(MANIFEST, overwrite=True)


RANDOM_LETTER = "Failed to predict, thus randomly generate one."


def record_judge_fallbacks(path: Path) -> None:
    """Append to path (JSON lines: index, question, prediction, letter) every MMBench answer that lmms-eval 0.7.3
    gives a random letter (or none) after its judge failed: its samples and results do not show it."""
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    path = Path(path)
    path.touch()
    original = MMBench_Evaluator.extract_answer_from_item
    if getattr(original, "records_fallbacks", False):
        return

    def extract_answer_from_item(self, item):
        out = original(self, item)
        if out is None or str(out[1]).startswith(RANDOM_LETTER):
            record = {"index": int(item["index"]), "question": str(item["question"]),
                      "prediction": str(item["prediction"]), "letter": None if out is None else out[0]}
            with open(path, "a") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return out

    extract_answer_from_item.records_fallbacks = True
    MMBench_Evaluator.extract_answer_from_item = extract_answer_from_item


def main() -> None:
    register()
    from selectbench.evaluation.lmms import FALLBACKS_ENV

    if os.environ.get(FALLBACKS_ENV):
        record_judge_fallbacks(Path(os.environ[FALLBACKS_ENV]))
    from selectbench.evaluation import responses

    if os.environ.get(responses.STORE_ENV):  # --use_cache <store>: resume from the answers stored there
        responses.install()
    from lmms_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
