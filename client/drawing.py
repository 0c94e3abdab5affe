"""The user's photo with the landmark's box drawn on it, for the front ends (the bot sends it back, the
web page shows it). Needs Pillow, which both front ends have; the rest of the package needs only httpx."""

from __future__ import annotations

import io
from collections.abc import Sequence

# A box that covers nearly the whole photo says nothing a person does not see: it is not drawn.
MIN_UNCOVERED = 0.1
BOX_RGB = (180, 83, 42)  # the web page's primary colour (web/.streamlit/config.toml)
MAX_SIDE = 1280  # what Telegram shows of a photo at most; plenty for the web page's column


def worth_drawing(box: Sequence[float] | None) -> bool:
    """Whether BOX ((x0, y0, x1, y1) in [0, 1]) leaves enough of the photo outside it to point at something."""
    if box is None:
        return False
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    return 0.0 < area <= 1.0 - MIN_UNCOVERED


def photo_with_box(photo: bytes, box: Sequence[float]) -> bytes | None:
    """The photo as a JPEG, upright (EXIF orientation applied, as the API read it), at most MAX_SIDE a
    side, with BOX drawn; None when Pillow here cannot read it (a HEIC without its decoder): then the
    front end shows the photo as it is."""
    from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(photo)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    width, height = image.size
    line = max(3, round(max(width, height) / 160))
    x0, y0, x1, y1 = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
    draw = ImageDraw.Draw(image)
    # A white edge outside the coloured one: visible on dark and light photos alike.
    draw.rectangle((x0 - line, y0 - line, x1 + line, y1 + line), outline=(255, 255, 255), width=max(1, line // 2))
    draw.rectangle((x0, y0, x1, y1), outline=BOX_RGB, width=line)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()
