"""Supervised dataset and collator: LLaVA records → padded input_ids, labels, pixel_values."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from selectbench.data.images import ImageLoader
from selectbench.data.validate import MAX_EXAMPLES, jsonable
from selectbench.models.conversation import IGNORE_INDEX, VicunaV1


class SupervisedDataset(Dataset):
    """Records encoded once up front (cheap); images are read lazily, so a 665k pool stays on disk."""

    def __init__(self, records: list[dict], template: VicunaV1, images: ImageLoader):
        self.records, self.images = records, images
        self.encoded = [template.encode(r["conversations"]) for r in records]
        # what max_length cut: counts and first examples (row, id), from the encodings made here anyway
        self.truncation = summarise_truncation(records, self.encoded, template.max_length)
        self.fully_masked, self.truncated = self.truncation["fully_masked"], self.truncation["truncated"]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record, enc = self.records[i], self.encoded[i]
        image = self.images.load(record["image"], record.get("id")) if enc.has_image else None
        return {"input_ids": enc.input_ids, "labels": enc.labels, "image": image}

    def lengths(self) -> list[int]:
        """Sequence length per example, negative for text-only ones (LLaVA's modality-length grouping)."""
        return [len(e.input_ids) if e.has_image else -len(e.input_ids) for e in self.encoded]


class RowDataset(SupervisedDataset):
    """Items carry their index into the records ("row"), for losses that look up per-example inputs."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**super().__getitem__(i), "row": i}


class Collator:
    """Right-pads a batch; pixel_values holds only the images present, in order (mixed batches work)."""

    def __init__(self, pad_token_id: int, images: ImageLoader):
        self.pad, self.images = pad_token_id, images

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[row, :n] = torch.tensor(b["input_ids"])
            labels[row, :n] = torch.tensor(b["labels"])
            mask[row, :n] = 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if "row" in batch[0]:
            out["rows"] = torch.tensor([b["row"] for b in batch], dtype=torch.long)
        pictures = [b["image"] for b in batch if b["image"] is not None]
        if pictures:
            out["pixel_values"] = self.images.pixel_values(pictures)
        return out


def truncation_report(records: Sequence[dict], template: VicunaV1) -> dict:
    """How the template's max_length treats valid records: truncated ones, ones whose supervised (answer) tokens
    are all cut away (fully_masked: they teach nothing), and ones cut inside their image tokens (image_cut: the
    template refuses them). Examples give the position in `records` and, for a published pool, the source row."""
    encodings = []
    for record in records:
        try:
            encodings.append(template.encode(record["conversations"]))
        except ValueError:
            encodings.append(None)
    return summarise_truncation(records, encodings, template.max_length)


def summarise_truncation(records: Sequence[dict], encodings: Sequence[Any], max_length: int) -> dict:
    """truncation_report from encodings already made (None = refused: cut through the image tokens)."""
    counts = Counter()
    examples: dict[str, list[dict]] = defaultdict(list)

    def note(kind: str, index: int, record: dict) -> None:
        counts[kind] += 1
        if len(examples[kind]) < MAX_EXAMPLES:
            examples[kind].append({"index": index, "row": record.get("row", index), "id": jsonable(record.get("id"))})

    for index, (record, enc) in enumerate(zip(records, encodings)):
        if enc is None:
            note("image_cut", index, record)
            continue
        if enc.truncated:
            note("truncated", index, record)
        if enc.supervised == 0:
            note("fully_masked", index, record)
    return {"max_length": max_length, "records": len(records),
            **{k: counts[k] for k in ("truncated", "fully_masked", "image_cut")},
            "first": {k: examples[k] for k in ("truncated", "fully_masked", "image_cut")}}
