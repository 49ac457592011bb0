"""Image conversion: round trips for every encoding, padded rows, byte order, and each bad case."""

import struct
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sora_ros.core.image import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    ImageConversionError,
    ImageTooLargeError,
    UnknownEncodingError,
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
        # A 64x48 header on a 128x96 buffer: was read as a garbled frame.
        ({"width": 2, "height": 3, "step": 6}, "Image.data holds 180 bytes, but step x height = 6 x 3 = 18"),
    ],
)
def test_bad_image_raises_with_field_and_value(changes, expected):
    with pytest.raises(ImageConversionError, match=expected.replace("(", r"\(").replace(")", r"\)")) as refused:
        image_to_numpy(good_fields(**changes))
    assert refused.value.reason == ("unknown_encoding" if "encoding" in changes else "malformed_image")


def test_odd_width_yuv_is_refused():
    raw = np.zeros((2, 3, 2), np.uint8)
    with pytest.raises(ImageConversionError, match="Image.width 3 must be even for 'yuv422'"):
        image_to_rgb(message(raw, "yuv422"))


def test_pack_refuses_mismatched_array():
    with pytest.raises(ImageConversionError, match=r"shape \(6, 10\) does not fit 'rgb8'"):
        pack_image(np.zeros((H, W), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype float64 does not fit 'mono16'"):
        pack_image(np.zeros((H, W)), "mono16")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(side: int) -> bytes:
    """A ~50 KB PNG whose header declares side x side gray pixels (the barrage's 20000x20000 bomb)."""
    rows = zlib.compress(b"\0" * (1 + side) * 2400, 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG with its SOF0 dimensions rewritten."""
    jpeg = bytearray(encode_compressed(random_pixels("rgb8"), "jpeg").tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


@pytest.mark.parametrize("data, image_format", [
    (png_bomb(20000), "png"), (png_bomb(40000), "png"), (jpeg_declaring(20000, 20000), "jpeg"),
    (jpeg_declaring(40000, 500), "rgb8; jpeg compressed bgr8"),
])
def test_images_over_the_pixel_budget_are_refused_before_decoding(data, image_format, monkeypatch):
    def never(*_args, **_kwargs):
        raise AssertionError("decoded an image over the budget")

    monkeypatch.setattr(cv2, "imdecode", never)
    monkeypatch.setattr("simplejpeg.decode_jpeg", never)
    with pytest.raises(ImageTooLargeError, match=r"over the budget of 16777216") as refused:
        compressed_to_rgb(SimpleNamespace(format=image_format, data=data))
    assert refused.value.reason == "image_too_large"


def test_raw_images_over_the_pixel_budget_are_refused():
    fields = good_fields(width=W, height=H)
    with pytest.raises(ImageTooLargeError, match=rf"Image is 10 x 6 = 60 pixels, over the budget of 59"):
        image_to_rgb(fields, max_pixels=59)
    assert image_to_rgb(fields, max_pixels=60).shape == (H, W, 3)
    assert DEFAULT_MAX_PIXELS >= 3840 * 2160  # a 4K camera fits


def corrupted_jpeg() -> bytes:
    """Bytes of the entropy-coded data overwritten: libjpeg warns "Corrupt JPEG data" and OpenCV
    returns a partial image."""
    jpeg = bytearray(encode_compressed(random_pixels("rgb8").repeat(8, 0).repeat(8, 1), "jpeg").tobytes())
    middle = len(jpeg) // 2
    jpeg[middle:middle + 20] = b"\x55" * 20
    return bytes(jpeg)


def truncated_png() -> bytes:
    png = encode_compressed(random_pixels("rgb8").repeat(8, 0).repeat(8, 1), "png").tobytes()
    return png[: len(png) // 2]


def flipped_png() -> bytes:
    png = bytearray(encode_compressed(random_pixels("rgb8").repeat(8, 0).repeat(8, 1), "png").tobytes())
    png[len(png) // 2] ^= 0xFF  # inside IDAT: its CRC no longer matches
    return bytes(png)


@pytest.mark.parametrize(
    "data, image_format, expected",
    [
        (b"", "jpeg", "CompressedImage.data is empty"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", "jpeg", r"CompressedImage.data \(22 bytes\) has no readable JPEG header"),
        (corrupted_jpeg(), "jpeg", r"Corrupt JPEG data"),
        (corrupted_jpeg()[:-400], "jpeg", r"Premature end of JPEG file"),
        (truncated_png(), "png", r"png\) is cut short at byte"),
        (flipped_png(), "png", r"chunk b'IDAT' at byte \d+ fails its CRC"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png", r"has no PNG IHDR header"),
        (png_bomb(0), "png", r"declares 0 x 0: the image is empty"),
    ],
)
def test_bad_compressed_raises(data, image_format, expected):
    with pytest.raises(ImageConversionError, match=expected) as refused:
        compressed_to_rgb(SimpleNamespace(format=image_format, data=data))
    assert refused.value.reason == "malformed_image"


def other_codec(kind: str) -> bytes:
    """A file of another codec: encoded by OpenCV, or its signature and a body (JPEG 2000, GIF)."""
    signatures = {"jp2": b"\x00\x00\x00\x0cjP  \r\n\x87\n", "j2k": b"\xff\x4f\xff\x51", "gif": b"GIF89a"}
    if kind in signatures:
        return signatures[kind] + bytes(200)
    ok, encoded = cv2.imencode(f".{kind}", random_pixels("rgb8"))
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("kind", ["bmp", "ppm", "tiff", "webp", "hdr", "sr", "jp2", "j2k", "gif"])
@pytest.mark.parametrize("image_format", ["jpeg", "png", "bgr8; jpeg compressed bgr8"])
def test_other_codecs_labelled_jpeg_or_png_are_refused(kind, image_format):
    with pytest.raises(UnknownEncodingError, match=r"but the data is not (jpeg|png)") as refused:
        compressed_to_rgb(SimpleNamespace(format=image_format, data=other_codec(kind)))
    assert refused.value.reason == "unknown_encoding"


@pytest.mark.parametrize("image_format", ["bmp", "tiff", "webp", "", "16UC1; compressedDepth png", "jpeg2000",
                                          "rgb8; jpeg", "rgb8; webp compressed rgb8"])
def test_formats_image_transport_does_not_define_are_refused_by_name(image_format):
    jpeg = encode_compressed(random_pixels("rgb8"), "jpeg").tobytes()
    with pytest.raises(UnknownEncodingError, match=f"CompressedImage.format {image_format!r} is not supported"):
        compressed_to_rgb(SimpleNamespace(format=image_format, data=jpeg))


@pytest.mark.parametrize("image_format, codec", [("jpeg", "jpeg"), ("JPG", "jpeg"), ("png", "png"),
                                                 ("rgb8; jpeg compressed bgr8", "jpeg"),
                                                 ("mono8; png compressed", "png")])
def test_image_transport_formats_decode(image_format, codec):
    rgb = random_pixels("rgb8").repeat(8, 0).repeat(8, 1)
    decoded = compressed_to_rgb(SimpleNamespace(format=image_format, data=encode_compressed(rgb, codec).tobytes()))
    assert decoded.shape == rgb.shape


def test_unknown_compressed_format_is_refused():
    with pytest.raises(ImageConversionError, match="CompressedImage.format 'webp' is not supported"):
        encode_compressed(random_pixels("rgb8"), "webp")


def test_module_imports_without_rclpy():
    """The numerical core must run where rclpy is absent (offline tools, tests)."""
    import subprocess
    import sys

    code = "import sys, sora_ros.core.image; assert 'rclpy' not in sys.modules, 'rclpy was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
