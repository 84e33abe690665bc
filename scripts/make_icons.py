"""Draw seiwallet's app icons as PNG files with the standard library alone (zlib and struct).

The mark: a white wallet with a clasp and a card tucked behind it, on a blue rounded square.
The same geometry is in static/icons/favicon.svg and the inline mark in the templates; change
them together. Run from the repository root:

    .venv/bin/python scripts/make_icons.py

It writes icon-192.png, icon-512.png, maskable-192.png, maskable-512.png and
apple-touch-icon.png (180 px, full bleed: iOS rounds the corners itself).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/seiwallet/web/static/icons"
SAMPLES = 4  # per axis: 16 samples a pixel for anti-aliased edges

Colour = tuple[float, float, float]
TOP: Colour = (0x3B / 255, 0x66 / 255, 0xF5 / 255)
BOTTOM: Colour = (0x1B / 255, 0x3A / 255, 0xC4 / 255)
SLOT: Colour = (0x24 / 255, 0x4A / 255, 0xDA / 255)
WHITE: Colour = (1.0, 1.0, 1.0)


def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Callable[..., bool]:
    """Whether a point lies inside a rounded rectangle (in 512-unit mark coordinates)."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2 - r, (y1 - y0) / 2 - r

    def inside(x: float, y: float) -> bool:
        dx, dy = max(abs(x - cx) - hx, 0.0), max(abs(y - cy) - hy, 0.0)
        return dx * dx + dy * dy <= r * r

    return inside


def circle(cx: float, cy: float, r: float) -> Callable[..., bool]:
    """Whether a point lies inside a circle."""
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r * r


BACKGROUND_ROUNDED = rounded_rect(0, 0, 512, 512, 116)
CARD = rounded_rect(150, 128, 362, 230, 26)
BODY = rounded_rect(104, 180, 408, 392, 44)
SLOT_SHAPE = rounded_rect(286, 250, 408, 322, 36)
CLASP = circle(322, 286, 13)


def colour_at(x: float, y: float, *, rounded: bool, scale: float) -> Colour | None:
    """The colour of the icon at a canvas point (512 units), None outside a rounded icon.

    The background spans the canvas; the wallet is scaled about the centre by `scale`, so a
    maskable icon keeps it inside the safe zone.
    """
    if rounded and not BACKGROUND_ROUNDED(x, y):
        return None
    t = min(max(y / 512, 0.0), 1.0)
    background = mix(TOP, BOTTOM, t)
    mx, my = 256 + (x - 256) / scale, 256 + (y - 256) / scale
    if BODY(mx, my):
        return SLOT if SLOT_SHAPE(mx, my) and not CLASP(mx, my) else WHITE
    if CARD(mx, my):
        return mix(background, WHITE, 0.55)
    return background


def mix(a: Colour, b: Colour, t: float) -> Colour:
    """The colour a fraction `t` of the way from `a` to `b`."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def render(size: int, *, rounded: bool, scale: float) -> bytes:
    """Filtered RGBA rows of the icon at `size` pixels, anti-aliased by supersampling."""
    rows = bytearray()
    unit = 512 / size
    samples = SAMPLES * SAMPLES
    for py in range(size):
        rows.append(0)  # PNG filter type: none
        for px in range(size):
            red = green = blue = 0.0
            covered = 0
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x = (px + (sx + 0.5) / SAMPLES) * unit
                    y = (py + (sy + 0.5) / SAMPLES) * unit
                    colour = colour_at(x, y, rounded=rounded, scale=scale)
                    if colour is None:
                        continue
                    red, green, blue = red + colour[0], green + colour[1], blue + colour[2]
                    covered += 1
            if covered == 0:
                rows += bytes(4)
                continue
            rows += bytes(
                (
                    round(red / covered * 255),
                    round(green / covered * 255),
                    round(blue / covered * 255),
                    round(covered / samples * 255),
                )
            )
    return bytes(rows)


def png(size: int, rgba_rows: bytes) -> bytes:
    """A PNG file (8-bit RGBA) from filtered rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rgba_rows, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    variants = {
        "icon-192.png": (192, True, 1.0),
        "icon-512.png": (512, True, 1.0),
        # Maskable icons keep everything important in the central 80 % circle.
        "maskable-192.png": (192, False, 0.72),
        "maskable-512.png": (512, False, 0.72),
        "apple-touch-icon.png": (180, False, 0.86),
    }
    for name, (size, rounded, scale) in variants.items():
        (OUT / name).write_bytes(png(size, render(size, rounded=rounded, scale=scale)))
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
