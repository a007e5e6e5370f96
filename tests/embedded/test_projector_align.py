"""Projector alignment: each cell's image token becomes the input embedding of that cell's character."""

import torch

from selectbench.embedded.recipe import cell_labels
from selectbench.data.images import ImageLoader
from selectbench.models.build import build_llava, image_processor_for
from selectbench.embedded.projector_align import align_projector, cell_token_ids
from selectbench.embedded.tokenizer import build_tokenizer


def test_image_tokens_land_on_their_characters(tmp_path, tiny_data, tiny_config):
    from transformers import AutoTokenizer

    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    arch = tiny_config["models"]["target"]["recipe"]["arch"]
    model = build_llava(arch, tokenizer, 0)
    images = ImageLoader(tiny_data.image_root, image_processor_for(arch["vision"]))
    items = cell_labels(tiny_data)
    ids = cell_token_ids(tokenizer)
    assert len(set(ids)) == 11
    embeddings = model.get_input_embeddings().weight.detach().clone()
    model.model.multi_modal_projector.requires_grad_(False)  # as stage 0 leaves it (language model alone)
    result = align_projector(model, tokenizer, images, items, {"steps": 300, "lr": 3e-3, "batch_size": 64}, 0)
    # the random tower still separates the cells' pixels well enough; a random projector is at ~1/11
    assert result["projector_align_accuracy"] > 0.5
    assert torch.equal(model.get_input_embeddings().weight, embeddings)  # only the projector moved


def test_position_codes_make_cells_distinct(tmp_path, tiny_data, tiny_config):
    from transformers import AutoTokenizer

    from selectbench.embedded.projector_align import cell_position_codes

    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    arch = tiny_config["models"]["target"]["recipe"]["arch"]
    model = build_llava(arch, tokenizer, 0)
    embeddings = model.get_input_embeddings().weight.detach()[cell_token_ids(tokenizer)]
    assert not cell_position_codes(9, embeddings, 0.0, 0).any()
    codes = cell_position_codes(9, embeddings, 0.5, 0)
    assert torch.allclose(codes.norm(dim=-1), 0.5 * embeddings.norm(dim=-1).mean().expand(9))
    assert torch.cdist(codes, codes).add(torch.eye(9)).min() > 0.1 * codes.norm(dim=-1).mean()
    images = ImageLoader(tiny_data.image_root, image_processor_for(arch["vision"]))
    result = align_projector(model, tokenizer, images, cell_labels(tiny_data),
                             {"steps": 300, "lr": 3e-3, "batch_size": 64, "position_scale": 0.5}, 0)
    # the character is still the nearest once the cell's code is taken away
    assert result["projector_align_accuracy"] > 0.5
