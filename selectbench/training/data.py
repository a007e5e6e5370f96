"""Supervised dataset and collator: LLaVA records → padded input_ids, labels, pixel_values."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from selectbench.data.images import ImageLoader
from selectbench.data.validate import summarise_truncation
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
        pictures = [b["image"] for b in batch if b["image"] is not None]
        if pictures:
            out["pixel_values"] = self.images.pixel_values(pictures)
        return out
