"""The user's photo with the landmarks' boxes drawn on it, for the front ends (the bot sends it back, the
web page shows it). Needs Pillow, which both front ends have; the rest of the package needs only httpx."""

from __future__ import annotations

import io
from collections.abc import Sequence

from client.contract import SearchResult

# A box that covers nearly the whole photo says nothing a person does not see: it is not drawn.
MIN_UNCOVERED = 0.1
ANSWER_RGB = (180, 83, 42)  # the web page's primary colour (web/.streamlit/config.toml)
OTHER_RGB = (75, 85, 99)  # the other landmarks found in the photo: grey, as on the web page's map
MAX_SIDE = 1280  # what Telegram shows of a photo at most; plenty for the web page's column

Box = Sequence[float]


def worth_drawing(box: Box | None) -> bool:
    """Whether BOX ((x0, y0, x1, y1) in [0, 1]) leaves enough of the photo outside it to point at something."""
    if box is None:
        return False
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    return 0.0 < area <= 1.0 - MIN_UNCOVERED


def boxes_to_draw(result: SearchResult, language: str = "") -> list[tuple[Box, str]]:
    """(box, name) of what to draw: the answer's box (a search with box=True), then the other landmarks
    found in the photo (find_all) with their regions, each named in LANGUAGE where the gallery has it.
    With several landmarks found every box is drawn, the whole photo's too: the names tell them apart."""
    best = result.landmark
    if best is None:
        return []
    others = result.also_found
    own = best.box
    if own is None:  # no box asked for: the answer's region from the detections, if any
        own = next((d.box for d in result.detections or [] if d.landmark_id == best.landmark_id), None)
    drawn: list[tuple[Box, str]] = []
    if own is not None and (others or worth_drawing(own)):
        drawn.append((own, result.name_in(best.landmark_id, best.name, language)))
    drawn += [(d.box, result.name_in(d.landmark_id, d.name, language)) for d in others]
    return drawn


def photo_with_boxes(photo: bytes, boxes: Sequence[tuple[Box, str]]) -> bytes | None:
    """The photo as a JPEG, upright (EXIF orientation applied, as the API read it), at most MAX_SIDE a
    side, with each (box, name) drawn, the first in the answer's colour and the others in grey, named
    when there are several; None when Pillow here cannot read it (a HEIC without its decoder): then the
    front end shows the photo as it is."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(photo)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    width, height = image.size
    line = max(3, round(max(width, height) / 160))
    try:  # DejaVu draws Cyrillic names too, where the system has it; Pillow's own font is Latin only
        font = ImageFont.truetype("DejaVuSans.ttf", max(12, line * 5))
    except OSError:
        font = ImageFont.load_default(size=max(12, line * 5))
    draw = ImageDraw.Draw(image)
    for position, (box, name) in enumerate(boxes):
        colour = ANSWER_RGB if position == 0 else OTHER_RGB
        x0, y0, x1, y1 = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
        # Inset by the line so a box along the photo's edge stays whole; a white edge inside the coloured
        # one keeps it visible on dark and light photos alike.
        x0, y0, x1, y1 = x0 + line, y0 + line, x1 - line, y1 - line
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        draw.rectangle((x0 + line, y0 + line, x1 - line, y1 - line), outline=(255, 255, 255), width=max(1, line // 2))
        if len(boxes) > 1:
            left, top, right, bottom = draw.textbbox((x0 + 2 * line, y0 + 2 * line), name, font=font)
            draw.rectangle((left - line, top - line, right + line, bottom + line), fill=colour)
            draw.text((x0 + 2 * line, y0 + 2 * line), name, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()
