"""Image loading as LLaVA-1.5 does it: pad to square with the processor's mean colour, then the CLIP processor."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError


class ImageLoadError(ValueError):
    """An image file that is missing, empty or unreadable; names the file and the record."""


def open_rgb(path: Path, record_id: str | None = None) -> Image.Image:
    where = f" (record {record_id})" if record_id is not None else ""
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty image file{where}")
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: image file not found{where}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ImageLoadError(f"{path}: unreadable image{where}: {err}") from None


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


class ImageLoader:
    """Loads images of records relative to an image root into pixel_values."""

    def __init__(self, image_root: Path, image_processor):
        self.root = Path(image_root)
        self.processor = image_processor
        mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
        self.fill = tuple(int(255 * m) for m in mean)  # LLaVA's expand2square colour (truncated, not rounded)

    def load(self, relpath: str, record_id: str | None = None) -> Image.Image:
        return expand_to_square(open_rgb(self.root / relpath, record_id), self.fill)

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"]
