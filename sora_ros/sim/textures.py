"""Procedural textures made with numpy, so the world needs no downloaded images.

Every generator takes a numpy Generator and returns uint8 (S, S, 3) RGB.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

TEXTURE_SIZE = 128  # pixels per side; TinyRenderer samples it per pixel


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.3, 1.0)) -> np.ndarray:
    """A random colour as float (3,) RGB in [0, 1], from uniform hue and value."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(0.35, 1.0) * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return random_colour(rng), random_colour(rng)


def _blend(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mask float (S, S) in [0, 1] -> uint8 (S, S, 3) mixing colours a (0) and b (1)."""
    rgb = a[None, None, :] * (1 - mask[..., None]) + b[None, None, :] * mask[..., None]
    return (rgb * 255).astype(np.uint8)


def checker(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    cells = int(rng.integers(2, 9))
    yy, xx = np.mgrid[:size, :size] * cells // size
    return _blend(((yy + xx) % 2).astype(np.float32), *_two_colours(rng))


def stripes(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    period = rng.uniform(6, 40)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    return _blend((np.sin(2 * np.pi * phase) > 0).astype(np.float32), *_two_colours(rng))


def noise(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Smooth value noise: random cells upsampled, a few octaves summed."""
    mask = np.zeros((size, size), np.float32)
    for octave, weight in ((4, 0.5), (8, 0.3), (16, 0.2)):
        cells = rng.random((octave, octave)).astype(np.float32)
        mask += weight * cv2.resize(cells, (size, size), interpolation=cv2.INTER_CUBIC)
    mask = (mask - mask.min()) / max(float(np.ptp(mask)), 1e-6)
    return _blend(mask, *_two_colours(rng))


def bricks(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    rows = int(rng.integers(4, 10))
    brick_h = size // rows
    brick_w = brick_h * 2
    mortar = max(1, brick_h // 8)
    yy, xx = np.mgrid[:size, :size]
    row = yy // brick_h
    shifted = xx + (row % 2) * (brick_w // 2)
    is_mortar = ((yy % brick_h) < mortar) | ((shifted % brick_w) < mortar)
    return _blend(is_mortar.astype(np.float32), *_two_colours(rng))


GENERATORS: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (checker, stripes, noise, bricks)


def random_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """One texture from a random generator: uint8 (S, S, 3) RGB."""
    return GENERATORS[int(rng.integers(len(GENERATORS)))](rng, size)
