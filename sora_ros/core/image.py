"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge, rclpy or any ROS message type.

Reads any object with the message's fields (rclpy messages, rosbags messages),
so the same code serves live topics and bag files; building messages is left
to their owners (sora_ros/nodes/messages.py for rclpy, sora_ros/bag/messages.py
for rosbags). Decoding is zero-copy where the layout allows: the returned
array is a view of the message buffer, so copy it before the message is reused.

Layout legend: H, W image height and width in pixels, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import zlib

import cv2
import numpy as np
import simplejpeg

# Pixel budget (width x height) of one camera image, checked on the header before anything is
# decoded or converted: 4096 x 4096, above 4K UHD (3840 x 2160).
DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageConversionError(ValueError):
    """An image message that cannot be converted; the message names the field and value.

    Attributes:
        reason: the drop counter a node counts it under ("drop/<reason>").
    """

    reason = "malformed_image"


class UnknownEncodingError(ImageConversionError):
    """An Image.encoding or CompressedImage.format this module does not decode, or compressed
    data that is not what its format says."""

    reason = "unknown_encoding"


class ImageTooLargeError(ImageConversionError):
    """An image whose header declares more pixels than the budget; refused before decoding."""

    reason = "image_too_large"


def check_pixel_budget(width: int, height: int, max_pixels: int, what: str) -> None:
    """Raises ImageTooLargeError when width x height exceeds max_pixels (`what` names the message)."""
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{what} is {width} x {height} = {width * height} pixels, over the budget of "
                                 f"{max_pixels} (parameter max_image_pixels); not decoded")


@dataclass(frozen=True)
class PixelFormat:
    """How one ROS encoding lays out a pixel."""

    dtype: np.dtype
    channels: int
    # OpenCV conversion of the raw array to RGB (None: handled by hand).
    to_rgb: int | None = None


_U8, _U16, _F32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)

# ROS's bayer_<pattern> names the top-left 2x2 block; OpenCV's Bayer codes name
# the second row's second and third pixels, hence RGGB -> BayerBG and so on.
_BAYER_TO_CV = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}

FORMATS: dict[str, PixelFormat] = {
    "rgb8": PixelFormat(_U8, 3),
    "bgr8": PixelFormat(_U8, 3, cv2.COLOR_BGR2RGB),
    "rgba8": PixelFormat(_U8, 4, cv2.COLOR_RGBA2RGB),
    "bgra8": PixelFormat(_U8, 4, cv2.COLOR_BGRA2RGB),
    "mono8": PixelFormat(_U8, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": PixelFormat(_U8, 1, cv2.COLOR_GRAY2RGB),
    "8UC3": PixelFormat(_U8, 3),
    "mono16": PixelFormat(_U16, 1),
    "16UC1": PixelFormat(_U16, 1),
    "32FC1": PixelFormat(_F32, 1),
    # Packed 4:2:2, two bytes per pixel: yuv422 is UYVY, yuv422_yuy2 is YUYV.
    "yuv422": PixelFormat(_U8, 2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": PixelFormat(_U8, 2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": PixelFormat(_U8, 2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": PixelFormat(_U8, 2, cv2.COLOR_YUV2RGB_YUY2),
    **{f"bayer_{p}8": PixelFormat(_U8, 1, code) for p, code in _BAYER_TO_CV.items()},
    **{f"bayer_{p}16": PixelFormat(_U16, 1, code) for p, code in _BAYER_TO_CV.items()},
}

# Depth-like encodings are shown by stretching their finite range to [0, 255].
_DEPTH_ENCODINGS = ("16UC1", "32FC1")


def pixel_format(encoding: str) -> PixelFormat:
    """The layout of `encoding`.

    Raises:
        UnknownEncodingError: the encoding is not supported.
    """
    try:
        return FORMATS[encoding]
    except KeyError:
        raise UnknownEncodingError(
            f"Image.encoding {encoding!r} is not supported; supported: {', '.join(FORMATS)}"
        ) from None


def image_to_numpy(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image into its raw pixel array.

    Args:
        msg: an Image message (rclpy or rosbags) or anything with its fields.
        max_pixels: pixel budget (width x height), checked before the data is touched.

    Returns:
        (H, W) for one-channel encodings, else (H, W, C), in the encoding's own
        dtype and channel order, native byte order. A view of msg.data unless
        the byte order had to be swapped.

    Raises:
        UnknownEncodingError: unknown encoding. ImageTooLargeError: over max_pixels.
        ImageConversionError: zero size, step too small for the row, or data whose length is
            not step x height (shorter: truncated; longer: the header does not describe it).
    """
    fmt = pixel_format(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if width == 0 or height == 0:
        raise ImageConversionError(f"Image.width x height is {width} x {height}: the image is empty")
    check_pixel_budget(width, height, max_pixels, "Image")
    row_bytes = width * fmt.channels * fmt.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"Image.step {step} is smaller than width x bytes per pixel = "
            f"{width} x {fmt.channels * fmt.dtype.itemsize} = {row_bytes} for {msg.encoding!r}"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size != step * height:
        raise ImageConversionError(
            f"Image.data holds {buffer.size} bytes, but step x height = {step} x {height} = {step * height}"
        )
    rows = buffer.reshape(height, step)[:, :row_bytes]  # (H, row_bytes), no copy
    stored = fmt.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = rows.view(stored)  # (H, W * C)
    if not stored.isnative:
        pixels = pixels.astype(fmt.dtype)
    shape = (height, width) if fmt.channels == 1 else (height, width, fmt.channels)
    return pixels.reshape(shape)


class PackedImage(NamedTuple):
    """The fields of a sensor_msgs/Image, with data as a flat uint8 array."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def pack_image(pixels: np.ndarray, encoding: str, *, bigendian: bool = False) -> PackedImage:
    """Lay out a pixel array as the fields of a sensor_msgs/Image (rows unpadded).

    Args:
        pixels: (H, W) or (H, W, C) in the encoding's dtype and channel order.
        encoding: a key of FORMATS.
        bigendian: write multi-byte pixels big-endian.

    Raises:
        ImageConversionError: the array does not match the encoding.
    """
    fmt = pixel_format(encoding)
    expected_ndim = 2 if fmt.channels == 1 else 3
    if pixels.ndim != expected_ndim or (fmt.channels > 1 and pixels.shape[2] != fmt.channels):
        raise ImageConversionError(
            f"array of shape {pixels.shape} does not fit {encoding!r} ({fmt.channels} channel(s))"
        )
    if pixels.dtype != fmt.dtype:
        raise ImageConversionError(f"array dtype {pixels.dtype} does not fit {encoding!r} ({fmt.dtype})")
    height, width = pixels.shape[:2]
    if fmt.dtype.itemsize > 1:
        pixels = pixels.astype(fmt.dtype.newbyteorder(">" if bigendian else "<"), copy=False)
    data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    return PackedImage(height, width, encoding, int(bigendian), width * fmt.channels * fmt.dtype.itemsize, data)


def image_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any supported sensor_msgs/Image to uint8 (H, W, 3) RGB in [0, 255].

    mono16 is scaled by 1/257; depth encodings (16UC1, 32FC1) stretch their
    finite range to [0, 255] in gray, for display and for models that take RGB.

    Raises:
        ImageConversionError: as image_to_numpy, or odd width for 4:2:2 YUV.
    """
    pixels = image_to_numpy(msg, max_pixels)
    fmt = FORMATS[msg.encoding]
    if fmt.channels == 2 and pixels.shape[1] % 2:
        raise ImageConversionError(f"Image.width {pixels.shape[1]} must be even for {msg.encoding!r}")
    if msg.encoding in _DEPTH_ENCODINGS:
        pixels = _stretch_to_u8(pixels)
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if fmt.dtype == _U16:
        if msg.encoding.startswith("bayer_"):
            return (cv2.cvtColor(pixels, fmt.to_rgb) >> 8).astype(np.uint8)
        pixels = (pixels >> 8).astype(np.uint8)
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if fmt.to_rgb is None:
        return pixels
    return cv2.cvtColor(pixels, fmt.to_rgb)


def _stretch_to_u8(values: np.ndarray) -> np.ndarray:
    """Map the finite range of a one-channel array to uint8 [0, 255]; non-finite -> 0."""
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = values[finite].min(), values[finite].max()
    scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return np.where(finite, scaled, 0).astype(np.uint8)


# Codec -> file extension for OpenCV's encoder; the codecs image_transport's compressed plugin defines.
_COMPRESSED_EXTENSIONS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
_PNG_IHDR = b"\x00\x00\x00\x0dIHDR"  # the chunk every PNG starts with: length 13, type IHDR


def compressed_codec(image_format: str) -> str:
    """The codec a CompressedImage.format names: "jpeg" or "png".

    image_transport's compressed plugin writes "jpeg" / "png" (older releases) or
    "<encoding>; jpeg compressed <encoding>" / "<encoding>; png compressed <encoding>".

    Raises:
        UnknownEncodingError: any other format (compressedDepth, bmp, tiff, webp, ...), named.
    """
    words = image_format.split(";", 1)[1].split() if ";" in image_format else image_format.split()
    codec = words[0].lower() if words else ""
    codec = "jpeg" if codec == "jpg" else codec
    if codec not in _SIGNATURES or (";" in image_format and words[1:2] != ["compressed"]):
        raise UnknownEncodingError(f"CompressedImage.format {image_format!r} is not supported; supported: jpeg, "
                                   f"png, '<encoding>; jpeg compressed <encoding>', '<encoding>; png compressed'")
    return codec


def _declared_size(codec: str, data: np.ndarray) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels.

    Raises:
        ImageConversionError: a header that cannot be read.
    """
    if codec == "png":
        if data.size < 24 or bytes(data[8:16]) != _PNG_IHDR:
            raise ImageConversionError(f"CompressedImage.data ({data.size} bytes) has no PNG IHDR header")
        return int.from_bytes(bytes(data[16:20]), "big"), int.from_bytes(bytes(data[20:24]), "big")
    try:
        height, width, _colorspace, _subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise ImageConversionError(f"CompressedImage.data ({data.size} bytes) has no readable JPEG header: "
                                   f"{error}") from None
    return width, height


def _check_png_chunks(data: np.ndarray) -> None:
    """Every chunk's CRC matches and the file ends with IEND: libpng, through OpenCV, returns a
    partial image for a truncated or damaged PNG.

    Raises:
        ImageConversionError: naming the first chunk that is cut short or damaged.
    """
    raw, offset = data.tobytes(), len(_SIGNATURES["png"])
    while offset + 12 <= len(raw):
        length = int.from_bytes(raw[offset:offset + 4], "big")
        kind, end = raw[offset + 4:offset + 8], offset + 12 + length
        if end > len(raw):
            break
        if zlib.crc32(raw[offset + 4:end - 4]) != int.from_bytes(raw[end - 4:end], "big"):
            raise ImageConversionError(f"CompressedImage.data (png): chunk {kind!r} at byte {offset} fails its CRC")
        if kind == b"IEND":
            return
        offset = end
    raise ImageConversionError(f"CompressedImage.data ({len(raw)} bytes, png) is cut short at byte {offset}")


def compressed_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG, as its format says) to uint8 (H, W, 3) RGB.

    The header is read first: an image over `max_pixels` is refused undecoded. JPEG decodes
    strictly (simplejpeg, libjpeg-turbo): any libjpeg warning ("Corrupt JPEG data",
    "Premature end of JPEG file"), which OpenCV would print and then return a partial image
    for, is a failed decode; so is a PNG with a damaged chunk (CRC) or cut short.

    Args:
        msg: a CompressedImage (rclpy or rosbags) or anything with `format` and `data`.
        max_pixels: pixel budget (width x height).

    Raises:
        UnknownEncodingError: a format other than JPEG or PNG, or data that is not what the
            format says. ImageTooLargeError: over max_pixels.
        ImageConversionError: empty, a header or pixel data that does not decode cleanly.
    """
    codec = compressed_codec(msg.format)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError(f"CompressedImage.data is empty (format {msg.format!r})")
    if bytes(data[: len(_SIGNATURES[codec])]) != _SIGNATURES[codec]:
        raise UnknownEncodingError(f"CompressedImage.format {msg.format!r} says {codec}, but the data is not "
                                   f"{codec} (it starts with {bytes(data[:8])!r})")
    width, height = _declared_size(codec, data)
    if width == 0 or height == 0:
        raise ImageConversionError(f"CompressedImage header declares {width} x {height}: the image is empty")
    check_pixel_budget(width, height, max_pixels, f"CompressedImage ({codec})")
    if codec == "jpeg":
        try:
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as error:
            raise ImageConversionError(f"CompressedImage.data ({data.size} bytes, jpeg): {error}") from None
    else:
        _check_png_chunks(data)
        rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)
        if rgb is None:
            raise ImageConversionError(f"CompressedImage.data ({data.size} bytes, png) does not decode")
    if rgb.shape[:2] != (height, width):
        raise ImageConversionError(f"CompressedImage decoded to {rgb.shape[1]} x {rgb.shape[0]}, but its header "
                                   f"declares {width} x {height}")
    return rgb


def encode_compressed(rgb: np.ndarray, image_format: str = "jpeg", quality: int = 90) -> np.ndarray:
    """Compress uint8 (H, W, 3) RGB to JPEG or PNG bytes (a flat uint8 array).

    Raises:
        ImageConversionError: unknown format or not an RGB image.
    """
    extension = _COMPRESSED_EXTENSIONS.get(image_format)
    if extension is None:
        raise ImageConversionError(
            f"CompressedImage.format {image_format!r} is not supported; supported: {', '.join(_COMPRESSED_EXTENSIONS)}"
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if extension == ".jpg" else []
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {image_format}")
    return encoded.reshape(-1)
