"""Image files and image folders for tests, written without TensorFlow.

`png_bytes` encodes a uint8 array as a PNG with the standard library (zlib, one filter byte
of 0 per row): tests that only need files on disk stay fast and need no TensorFlow.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG of the uint8 array `image` (H, W) or (H, W, C) with C = 1 or 3."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    height, width, channels = image.shape
    colour = {1: 0, 3: 2}[channels]  # PNG colour types: grey, RGB
    rows = b"".join(b"\x00" + image[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def write_png(path, image: np.ndarray) -> None:
    """Writes `image` as a PNG at `path`, creating its folder."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(png_bytes(image))


def write_image_folder(
    root, counts: dict[str, int], side: int = 8, channels: int = 1, seed: int = 0
) -> dict[str, list[str]]:
    """Writes `<root>/train/<class>/<i>.png`, `counts[class]` random images per class.

    Returns:
      ``{class: [paths]}``.
    """
    rng = np.random.default_rng(seed)
    files = {}
    for name, count in counts.items():
        files[name] = []
        for i in range(count):
            path = os.path.join(str(root), "train", name, f"{i}.png")
            write_png(path, rng.integers(0, 256, (side, side, channels), dtype=np.uint8))
            files[name].append(path)
    return files


def damage_middle(path) -> None:
    """Overwrites the bytes after a PNG's header (the first image-data chunk's length and
    type), keeping its signature and its IEND end: a file the cheap checks pass that does not
    decode."""
    data = bytearray(open(path, "rb").read())
    data[33:43] = b"\xff" * 10  # after the 8-byte signature and the 25-byte IHDR chunk
    with open(path, "wb") as f:
        f.write(bytes(data))
