"""What the study pages are made of: PNG data URIs of the images, and the pages rendered from jinja2 templates.

The participant page (``templates/study.html.jinja``) and the score page (``templates/score.html.jinja``) are laid
out by their templates (autoescape on); the functions here only gather plain data. The PNG encoder writes the
smallest valid file (IHDR, IDAT, IEND: no text, time or colour-profile chunks), so an image carries nothing but
its pixels.
"""

from __future__ import annotations

import base64
import struct
import time
import zlib
from functools import lru_cache
from typing import Any

import jinja2
import numpy as np
import torch
from torch import Tensor

__all__: list[str] = []  # internals of sis_attr.overinterpretation.study

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG of ``pixels``: ``(H, W)`` grey or ``(H, W, 3)`` RGB ``uint8``; no metadata chunk."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"png_bytes needs (H, W) or (H, W, 3) uint8 pixels, got {pixels.dtype} {pixels.shape}")
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    colour_type = 0 if pixels.ndim == 2 else 2
    rows = np.ascontiguousarray(pixels).reshape(h, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))  # filter type 0 (None) on every row
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def masked_pixels(image: Tensor, keep: Tensor | None, grey: Tensor) -> np.ndarray:
    """One display image: ``(C, H, W)`` in ``[0, 1]``, hidden positions painted ``grey``; ``uint8`` pixels.

    ``keep`` is the ``(1 or C, H, W)`` keep-mask (None: the full image); ``grey`` is ``(C, 1, 1)``. One channel
    gives an ``(H, W)`` grey image; three give RGB; other counts show their first three channels (or the
    first one as grey) like the audit report's figures.
    """
    x = image.double().clamp(0.0, 1.0)
    if keep is not None:
        x = torch.where(keep.bool(), x, grey.double())
    if x.shape[0] == 1:
        out = x[0]
    else:
        out = (x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)).permute(1, 2, 0)
    return (out * 255.0).round().to(torch.uint8).numpy()


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The jinja2 environment of the study templates (autoescape on, strict undefined)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sis_attr.overinterpretation.study", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(written_at=time.strftime("%Y-%m-%d %H:%M"), **context)
