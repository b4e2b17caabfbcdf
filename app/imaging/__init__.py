"""Bytes to pixels (decoding) and pixels to model input (preprocessing)."""

from app.imaging.decode import DecodedImage, decode_image, sniff_format
from app.imaging.preprocess import InputSpec, to_model_input

__all__ = ["DecodedImage", "InputSpec", "decode_image", "sniff_format", "to_model_input"]
