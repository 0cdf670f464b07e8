"""QR codes: links in images a person scans with a phone ("quishing").

A QR code takes the link out of reach of every text-based filter, and the
phone that opens it is outside the organisation's protection. Images in
attachments, inline images, ``data:`` images in HTML and images in PDF
pages are decoded with zxing-cpp; what a code holds is searched for URLs
as text is.

SECURITY: images are hostile: a small file can declare a huge canvas
(decompression bomb). Pillow refuses images over ``MAX_PIXELS``; large
images are reduced before decoding; the number of images decoded per
message and the bytes of a ``data:`` image are bounded.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from typing import Iterator

log = logging.getLogger("mailward.urls")

MAX_IMAGES = 20
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 2000
MAX_DATA_IMAGES = 10
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_DATA_IMAGE = re.compile(r"(?i)data:image/(?:png|jpe?g|gif|bmp|webp);base64,"
                         r"([A-Za-z0-9+/=\s]{64,14000000})")


def is_image(data: bytes) -> bool:
    """is_image - a raster image format Pillow reads (by its magic bytes)."""
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _formats():
    """_formats - the barcode formats decoded: the QR code family."""
    import zxingcpp

    return [zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.MicroQRCode,
            zxingcpp.BarcodeFormat.RMQRCode]


def pil_urls(image) -> list[str]:
    """pil_urls - the URL-like texts of the QR codes in a Pillow image."""
    import zxingcpp

    from mailward.urls.extract import text_candidates

    if image.width * image.height > MAX_PIXELS:
        return []
    if max(image.width, image.height) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    found: list[str] = []
    for result in zxingcpp.read_barcodes(image, formats=_formats()):
        text = result.text or ""
        candidates = list(text_candidates(text, "qr"))
        found.extend(c.raw for c in candidates)
        if not candidates and "." in text and " " not in text.strip():
            found.append(text.strip())
    return found


def image_urls(data: bytes) -> list[str]:
    """image_urls - the URLs in the QR codes of one image file."""
    if len(data) > MAX_IMAGE_BYTES:
        return []
    from PIL import Image, ImageFile

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    # A mail reader shows what a cut or broken image holds before the break; a QR
    # code there must be read too, else breaking the file's end hides the code.
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced size
            image.load()  # decoding errors raise here, not inside the QR reader
            return pil_urls(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        log.debug("image not decoded for QR codes: %s", error)
        return []


def data_image_urls(html: str) -> Iterator[str]:
    """data_image_urls - URLs in QR codes of ``data:image/...;base64`` images in HTML."""
    if "data:image" not in html[:MAX_IMAGE_BYTES * 2].lower():
        return
    for count, match in enumerate(_DATA_IMAGE.finditer(html)):
        if count >= MAX_DATA_IMAGES:
            return
        try:
            data = base64.b64decode(re.sub(r"\s+", "", match.group(1)), validate=False)
        except (binascii.Error, ValueError):
            continue
        yield from image_urls(data)
