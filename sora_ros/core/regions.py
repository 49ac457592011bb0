"""Frame regions: the centred window a crop keeps, and the camera's central square within a scored frame.

A square model used to see only the central square of every camera (the window `centred_window`
gives for a 1:1 aspect); evaluation scores that square and the margins it dropped separately.

    centred_window(480, 640, (1, 1))          # (0, 80, 480, 480): columns 80..560
    centre_square((480, 640))                 # (slice(0, 480), slice(80, 560))
    centre_square((48, 64), (480, 640))       # (slice(0, 48), slice(8, 56)): a 4:3 model input
    centre_square((64, 64), (480, 640))       # (slice(0, 64), slice(0, 64)): already the square, no margins

Pure arithmetic: no cv2, torch or ROS.
"""

from __future__ import annotations


def centred_window(height: int, width: int, aspect: tuple[float, float]) -> tuple[int, int, int, int]:
    """The largest window of aspect ratio `aspect` that fits a height x width frame, centred.

    Args:
        height, width: the frame in pixels, both > 0.
        aspect: (h, w) whose ratio the window takes, e.g. a model input size, or (1, 1).

    Returns:
        (top, left, window_height, window_width) in pixels of the frame.
    """
    aspect_h, aspect_w = aspect
    window_h = min(height, round(width * aspect_h / aspect_w))
    window_w = min(width, round(height * aspect_w / aspect_h))
    return (height - window_h) // 2, (width - window_w) // 2, window_h, window_w


def centre_square(frame_shape: tuple[int, int], camera_shape: tuple[int, int] | None = None) -> tuple[slice, slice]:
    """Rows and columns of a scored frame that the camera's central square covers.

    The scored frame is the camera frame fitted to the frame's shape (`fit_frame`: centred crop to
    its aspect ratio, then resize), so the square is the camera's own central square (what a square
    centre crop of the camera keeps), cut to the part the frame shows and scaled to its pixels.
    The margins are the rest of the frame: none when these slices span it (a square camera, or a
    frame that is itself the camera's square crop).

    Args:
        frame_shape: (H, W) of the scored frame.
        camera_shape: (H0, W0) of the camera frame it was fitted from; None: the frame is the camera's.

    Returns:
        (rows, cols) slices into the frame, each non-empty.
    """
    height, width = frame_shape
    camera_h, camera_w = frame_shape if camera_shape is None else camera_shape
    shown_top, shown_left, shown_h, shown_w = centred_window(camera_h, camera_w, (height, width))
    square_top, square_left, side, _ = centred_window(camera_h, camera_w, (1, 1))

    def span(square_start: int, shown_start: int, shown: int, size: int) -> slice:
        # Camera pixels [square_start, + side) within the shown window, in scored-frame pixels.
        start = max(square_start - shown_start, 0)
        stop = min(square_start + side - shown_start, shown)
        return slice(round(start * size / shown), round(stop * size / shown))

    return (span(square_top, shown_top, shown_h, height), span(square_left, shown_left, shown_w, width))
