"""Image conversion: round trips for every encoding, padded rows, byte order, and each bad case."""

from types import SimpleNamespace

import numpy as np
import pytest

from sora_ros.core.image import (
    FORMATS,
    ImageConversionError,
    compressed_to_rgb,
    encode_compressed,
    image_to_numpy,
    image_to_rgb,
    pack_image,
)

RNG = np.random.default_rng(0)
H, W = 6, 10


def random_pixels(encoding: str) -> np.ndarray:
    """Random pixels of the encoding's dtype: (H, W) or (H, W, C)."""
    fmt = FORMATS[encoding]
    shape = (H, W) if fmt.channels == 1 else (H, W, fmt.channels)
    if fmt.dtype == np.float32:
        return RNG.standard_normal(shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(fmt.dtype).max, shape, endpoint=True).astype(fmt.dtype)


def message(pixels: np.ndarray, encoding: str, *, bigendian: bool = False, pad: int = 0) -> SimpleNamespace:
    """An Image-like message with `pad` junk bytes after every row."""
    packed = pack_image(pixels, encoding, bigendian=bigendian)
    rows = packed.data.reshape(packed.height, packed.step)
    junk = np.full((packed.height, pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1).tobytes()
    return SimpleNamespace(**{**packed._asdict(), "step": packed.step + pad, "data": data})


@pytest.mark.parametrize("encoding", sorted(FORMATS))
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 7])
def test_round_trip_every_encoding(encoding, bigendian, pad):
    pixels = random_pixels(encoding)
    decoded = image_to_numpy(message(pixels, encoding, bigendian=bigendian, pad=pad))
    assert decoded.dtype == pixels.dtype and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, pixels)


def test_rclpy_image_round_trip_is_zero_copy():
    from sora_ros.nodes.messages import numpy_to_image

    pixels = random_pixels("rgb8")
    msg = numpy_to_image(pixels, "rgb8")
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert np.shares_memory(decoded, np.frombuffer(msg.data, np.uint8)), "decoding copied the buffer"


def test_big_endian_bytes_are_big_endian():
    pixels = np.array([[0x0102, 0xA0B0]], np.uint16)
    assert bytes(pack_image(pixels, "mono16", bigendian=True).data) == b"\x01\x02\xa0\xb0"
    assert bytes(pack_image(pixels, "mono16").data) == b"\x02\x01\xb0\xa0"


def test_to_rgb_channel_orders():
    rgb = random_pixels("rgb8")
    for encoding, raw in [
        ("rgb8", rgb),
        ("bgr8", rgb[..., ::-1]),
        ("rgba8", np.dstack([rgb, np.full((H, W), 9, np.uint8)])),
        ("bgra8", np.dstack([rgb[..., ::-1], np.full((H, W), 9, np.uint8)])),
    ]:
        np.testing.assert_array_equal(image_to_rgb(message(np.ascontiguousarray(raw), encoding)), rgb, encoding)
    gray = random_pixels("mono8")
    np.testing.assert_array_equal(image_to_rgb(message(gray, "mono8")), np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(image_to_rgb(message(gray.astype(np.uint16) * 257, "mono16"))[..., 0], gray)


def test_depth_stretches_finite_range_and_zeroes_nan():
    depth = np.array([[1.0, 2.0, np.nan, 3.0]], np.float32)
    np.testing.assert_array_equal(image_to_rgb(message(depth, "32FC1"))[0, :, 0], [0, 127, 0, 255])


@pytest.mark.parametrize(
    "encoding, layout",
    [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")],
)
def test_yuv422_byte_order(encoding, layout):
    luma = np.array([[40, 200, 90, 160]], np.uint8)
    chroma_u, chroma_v = 128, 240  # neutral blue difference, strong red difference
    pairs = []
    for y0, y1 in luma.reshape(-1, 2):
        pairs += [chroma_u, y0, chroma_v, y1] if layout == "UYVY" else [y0, chroma_u, y1, chroma_v]
    raw = np.array(pairs, np.uint8).reshape(1, 4, 2)
    rgb = image_to_rgb(message(raw, encoding)).astype(int)
    assert (rgb[0, :, 0] > rgb[0, :, 2]).all(), "V did not land in the red channel"
    assert np.argsort(rgb[0, :, 1]).tolist() == np.argsort(luma[0]).tolist(), "luma landed on the wrong pixels"


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_pattern_demosaics_to_the_right_colour(pattern, bits):
    colour = np.array([200, 120, 40])  # R, G, B
    scale = 257 if bits == 16 else 1
    channel_of = {"r": 0, "g": 1, "b": 2}
    mosaic = np.zeros((8, 8), np.uint16 if bits == 16 else np.uint8)
    for (dy, dx), letter in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        mosaic[dy::2, dx::2] = colour[channel_of[letter]] * scale
    rgb = image_to_rgb(message(mosaic, f"bayer_{pattern}{bits}"))
    np.testing.assert_allclose(rgb[2:-2, 2:-2].reshape(-1, 3).mean(axis=0), colour, atol=2)


def test_compressed_png_is_lossless_and_jpeg_close():
    rgb = np.kron(random_pixels("rgb8"), np.ones((8, 8, 1), np.uint8))  # blocky: JPEG-friendly
    png = SimpleNamespace(format="png", data=encode_compressed(rgb, "png").tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    jpeg = SimpleNamespace(format="jpeg", data=encode_compressed(rgb, "jpeg", quality=95).tobytes())
    # Chroma subsampling costs a few levels; a swapped channel order costs ~80.
    assert np.abs(compressed_to_rgb(jpeg).astype(int) - rgb).mean() < 12


def good_fields(**changes) -> SimpleNamespace:
    packed = pack_image(random_pixels("rgb8"), "rgb8")
    return SimpleNamespace(**{**packed._asdict(), **changes})


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"encoding": "rgb9"}, "Image.encoding 'rgb9' is not supported"),
        ({"width": 0}, "Image.width x height is 0 x 6"),
        ({"height": 0}, "Image.width x height is 10 x 0"),
        ({"step": 29}, "Image.step 29 is smaller than width x bytes per pixel = 10 x 3 = 30"),
        ({"data": b"\x00" * 100}, "Image.data holds 100 bytes, but step x height = 30 x 6 = 180"),
    ],
)
def test_bad_image_raises_with_field_and_value(changes, expected):
    with pytest.raises(ImageConversionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        image_to_numpy(good_fields(**changes))


def test_odd_width_yuv_is_refused():
    raw = np.zeros((2, 3, 2), np.uint8)
    with pytest.raises(ImageConversionError, match="Image.width 3 must be even for 'yuv422'"):
        image_to_rgb(message(raw, "yuv422"))


def test_pack_refuses_mismatched_array():
    with pytest.raises(ImageConversionError, match=r"shape \(6, 10\) does not fit 'rgb8'"):
        pack_image(np.zeros((H, W), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype float64 does not fit 'mono16'"):
        pack_image(np.zeros((H, W)), "mono16")


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "CompressedImage.data is empty"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", r"CompressedImage.data \(22 bytes, format 'jpeg'\) is not a readable"),
    ],
)
def test_bad_compressed_raises(data, expected):
    with pytest.raises(ImageConversionError, match=expected):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=data))


def test_truncated_jpeg_is_refused_or_decoded_never_crashes():
    jpeg = encode_compressed(random_pixels("rgb8"), "jpeg").tobytes()
    with pytest.raises(ImageConversionError, match="not a readable JPEG or PNG"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=jpeg[:20]))


def test_unknown_compressed_format_is_refused():
    with pytest.raises(ImageConversionError, match="CompressedImage.format 'webp' is not supported"):
        encode_compressed(random_pixels("rgb8"), "webp")


def test_module_imports_without_rclpy():
    """The numerical core must run where rclpy is absent (offline tools, tests)."""
    import subprocess
    import sys

    code = "import sys, sora_ros.core.image; assert 'rclpy' not in sys.modules, 'rclpy was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
