"""The from-scratch vision tower learns to tell the grid cells apart before LLaVA training freezes it."""

from selectbench.embedded.recipe import cell_labels
from selectbench.data.images import ImageLoader
from selectbench.models.build import build_llava, image_processor_for
from selectbench.embedded.tokenizer import build_tokenizer
from selectbench.embedded.vision_pretrain import pretrain_vision_tower


def test_pretraining_beats_the_majority_class(tmp_path, tiny_data, tiny_config):
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], tmp_path / "tok")
    from transformers import AutoTokenizer

    arch = tiny_config["models"]["target"]["recipe"]["arch"]
    model = build_llava(arch, AutoTokenizer.from_pretrained(tmp_path / "tok"), 0)
    items = cell_labels(tiny_data)
    assert len(items) == tiny_config["datasets"]["digits"]["embedded"]["caption_size"]
    empty_share = sum(c == -1 for it in items[-len(items) // 10:] for c in it["cells"]) / (9 * (len(items) // 10))
    images = ImageLoader(tiny_data.image_root, image_processor_for(arch["vision"]))
    result = pretrain_vision_tower(model.model.vision_tower, images, items, {"epochs": 30, "lr": 1e-2, "batch_size": 16},
                                   -1, 0)
    assert result["vision_pretrain_cell_accuracy"] > empty_share + 0.15
