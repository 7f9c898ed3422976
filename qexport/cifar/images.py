"""Image encoders.

BMP: 24-bit BI_RGB, bottom-up BGR rows padded to 4 bytes, header laid out as Pillow writes it.  A
whole chunk of images is assembled as one numpy array (headers + pixels); each file is then one
os.write of a slice.  PNG goes through Pillow.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from ..errors import DependencyMissing

WIDTH = HEIGHT = 32


def bmp_header(width: int, height: int) -> bytes:
    """BITMAPFILEHEADER + BITMAPINFOHEADER of a 24-bit BI_RGB bottom-up image (as Pillow writes)."""
    stride = (width * 3 + 3) & ~3
    image = stride * height
    ppm = 3780  # 96 dpi, Pillow's default
    return (
        b"BM" + struct.pack("<IHHI", 14 + 40 + image, 0, 0, 14 + 40)
        + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, image, ppm, ppm, 0, 0)
    )


def encode_bmp_batch(data: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """(n, 3*H*W) planar RGB rows -> (n, file size) uint8: one complete BMP file per row."""
    n = len(data)
    header = np.frombuffer(bmp_header(width, height), np.uint8)
    stride = (width * 3 + 3) & ~3
    out = np.empty((n, len(header) + stride * height), np.uint8)
    out[:, : len(header)] = header
    rows = out[:, len(header) :].reshape(n, height, stride)
    if stride != width * 3:
        rows[:, :, width * 3 :] = 0
    pixels = rows[:, :, : width * 3].reshape(n, height, width, 3)  # a view (last axis split only)
    planes = data.reshape(n, 3, height, width)
    # Rows bottom-up, bytes B, G, R: one strided copy per channel, straight into the files' buffer.
    for byte, plane in enumerate((2, 1, 0)):
        pixels[..., byte] = planes[:, plane, ::-1, :]
    return out


def _png_encoder():
    try:
        from PIL import Image
    except ImportError:
        raise DependencyMissing("--format png needs Pillow: pip install pillow") from None

    def encode(rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.frombytes("RGB", (rgb.shape[1], rgb.shape[0]), rgb.tobytes()).save(buf, format="PNG")
        return buf.getvalue()

    return encode
