"""The token grid a camera gets: it follows the camera's aspect ratio at the model's pixel budget.

The Sora report turns videos of any resolution and aspect ratio into a variable number of
spacetime patches (in the spirit of Patch n' Pack / NaViT) instead of resizing them all to one
shape. Here each camera gets the token grid (gh, gw) nearest its aspect ratio among the grids
whose token count stays within ±25% of the budget (the tokens of the model's reference size,
e.g. 64x64 pixels = 4x4 tokens of 16x16 pixels); the model input is then (gh * cell, gw * cell)
pixels, and only the sliver between the camera's aspect ratio and the grid's is cropped: none for
1:1, 4:3 and 3:4 at a 16-token budget, 6% of a 16:9 camera's width, at most 18% of a side for
any camera from 1:3 to 3:1 (`max` over a fine sweep of aspect ratios), against 25% of a 4:3
camera's width and 57% of a 640x272 one's under the square crop. A camera within ASPECT_SLACK
beyond the model's aspect range gets the grid of the range's nearest end (the grid nearest its own
ratio could be one no camera in the range gets), so it loses at most ASPECT_SLACK more.

    grid = PatchGrid(cell=16, budget=16, aspect_range=(1.0, 2.4))
    grid.input_size(480, 640)   # (48, 64): 3x4 tokens, exactly 4:3
    grid.input_size(272, 640)   # (48, 96): 3x6 tokens
    grid.input_size(64, 160)    # (48, 96): 2.5:1 is in the slack, served as 2.4:1 (2x6 tokens is 3:1)
    grid.input_size(640, 480)   # AspectError: 0.75 lies outside 1.0 to 2.4

Pure arithmetic: no numpy, torch or ROS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from sora_ros.core.regions import centred_window

# Token counts allowed around the budget: a grid may hold this fraction fewer or more tokens.
BUDGET_TOLERANCE = 0.25
# model.json's input.sizing: what `PatchGrid.tokens` does, in words, for whoever reads a model directory.
SIZING = (f"each camera gets the token grid nearest its aspect ratio (width / height), clamped into aspect_range, "
          f"within {BUDGET_TOLERANCE:.0%} of the reference size's token count; the sliver between the two ratios is "
          "centre-cropped (sora_ros.core.patch_grid)")
# What a user may choose for a camera outside a model's aspect range: refuse its frames, or
# centre-crop them into the range.
ASPECT_POLICIES = ("refuse", "crop")
# A camera within this fraction of the range's ends is served (its grid crops at most this much more):
# a 639x640 camera is as square as the square cameras a model was trained on.
ASPECT_SLACK = 0.05


class AspectError(ValueError):
    """A camera's aspect ratio lies outside the range a model was trained on."""


@dataclass(frozen=True)
class PatchGrid:
    """Chooses a model input size per camera shape.

    Attributes:
        cell: model-input pixels per token side (the VAE's downsample factor x the DiT's patch size).
        budget: tokens per frame of the model's reference size.
        aspect_range: (lowest, highest) width / height of the cameras the model serves.
    """

    cell: int
    budget: int
    aspect_range: tuple[float, float]

    def __post_init__(self) -> None:
        low, high = self.aspect_range
        if self.cell <= 0 or self.budget < 4 or not 0 < low <= high or not math.isfinite(high):
            raise ValueError(f"bad patch grid: cell {self.cell}, budget {self.budget}, aspect range {self.aspect_range}")

    def admits(self, height: int, width: int) -> bool:
        """Whether a (height, width) camera's aspect ratio lies in `aspect_range`, within ASPECT_SLACK."""
        low, high = self.aspect_range
        return height > 0 and width > 0 and low * (1 - ASPECT_SLACK) <= width / height <= high * (1 + ASPECT_SLACK)

    def tokens(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (gh, gw) for a camera of (height, width) pixels.

        Raises:
            AspectError: width / height lies outside `aspect_range` (the message says what to do).
            ValueError: a side below 1 pixel.
        """
        if height <= 0 or width <= 0:
            raise ValueError(f"a {width}x{height} camera: both sides must be at least 1 pixel")
        if not self.admits(height, width):
            low, high = self.aspect_range
            raise AspectError(f"a {width}x{height} camera has aspect ratio {width / height:.3g} (width / height); "
                              f"this model serves {low:.3g} to {high:.3g}: crop the camera into that range (the "
                              "node's parameter aspect_policy:=crop, eval's --aspect-policy crop) or fine-tune on "
                              "this camera (sora-ros train --init)")
        return _nearest_grid(self.budget, self.served_aspect(width / height))

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input (H, W) in pixels for a camera of (height, width) pixels; raises as `tokens`."""
        gh, gw = self.tokens(height, width)
        return gh * self.cell, gw * self.cell

    def clamp(self, height: int, width: int) -> tuple[int, int]:
        """The largest centred (height, width) window of the camera whose aspect ratio lies in the range
        (the camera itself when it does): what aspect_policy crop keeps."""
        return centred_window(height, width, (1.0, self.served_aspect(width / height)))[2:]

    def served_aspect(self, aspect: float) -> float:
        """`aspect` (width / height) clamped into `aspect_range`. A camera admitted through ASPECT_SLACK
        gets the grid of the range's nearest end, a grid the model trained on: the grid nearest its own
        ratio may lie beyond the range (a 2.5:1 camera nearest 2x6 tokens, 3:1, under a 2.4:1 limit)."""
        low, high = self.aspect_range
        return min(max(aspect, low), high)

    def grids(self) -> tuple[tuple[int, int], ...]:
        """Every token grid (gh, gw) `tokens` may choose at this budget, aspect range aside."""
        return _candidates(self.budget)


@lru_cache(maxsize=16)
def _candidates(budget: int) -> tuple[tuple[int, int], ...]:
    """(gh, gw), both >= 2, with a token count within BUDGET_TOLERANCE of `budget`."""
    fewest, most = math.ceil(budget * (1 - BUDGET_TOLERANCE)), math.floor(budget * (1 + BUDGET_TOLERANCE))
    return tuple((gh, gw) for gh in range(2, most // 2 + 1) for gw in range(2, most // gh + 1) if gh * gw >= fewest)


@lru_cache(maxsize=256)
def _nearest_grid(budget: int, aspect: float) -> tuple[int, int]:
    """The candidate grid nearest `aspect` in log ratio; ties go to the token count nearest the
    budget, then to fewer tokens."""
    return min(_candidates(budget), key=lambda g: (round(abs(math.log(g[1] / g[0] / aspect)), 9),
                                                   abs(math.log(g[0] * g[1] / budget)), g[0] * g[1]))
