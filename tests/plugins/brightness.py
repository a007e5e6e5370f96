"""A method plug-in that lives outside methods/ and brings its own per-example feature: the mean brightness of a
record's image, extracted by sharded jobs like the built-in features, then ranked. Used by
tests/selection/test_plugin_feature.py through the config's `method_dirs`."""

from __future__ import annotations

import numpy as np

from selectbench.features import Feature, ShardJob
from selectbench.selection.base import Method, band_indices


def extract_brightness(job: ShardJob) -> dict:
    """Mean pixel value of each image record of this shard (text-only records: missing)."""
    from PIL import Image

    from selectbench.features.sharding import plan_batches, save_npz, shard_batches

    batches = shard_batches(plan_batches(job.data.pool, range(len(job.data.pool)), job.batch_size), job.shard,
                            job.shards)
    rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    values = np.full((len(rows), 1), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        record = job.data.pool[row]
        if "image" in record:
            values[i, 0] = np.asarray(Image.open(job.data.image_root / record["image"]).convert("L")).mean()
    save_npz(job.out, {"rows": rows, "brightness": values})
    return {"examples": len(rows), "seconds": 0.0}


class Brightness(Method):
    name = "brightness"
    parameters = {"band": "high"}
    requires = ("image_brightness",)
    features = {"image_brightness": Feature(name="image_brightness", defaults={}, requires=("pool",),
                                            extractor=extract_brightness)}

    def score(self, ctx):
        return {"brightness": np.load(ctx.artifacts["image_brightness"])["brightness"][:, 0]}

    def select(self, ctx, scores, n, seed):
        return band_indices(scores["brightness"], n, ctx.params["band"])
