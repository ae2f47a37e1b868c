"""Dataset sources, splits and sequence views (no training code here)."""

from rnnkit.data.cache import cache_dir
from rnnkit.data.images import IMAGE_SOURCES, ImageSplits, load_image_source, read_idx

__all__ = ["IMAGE_SOURCES", "ImageSplits", "cache_dir", "load_image_source", "read_idx"]
