"""Streamlit building blocks shared by the pages: error messages, photo fetching, result views."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import pandas as pd
import pydeck as pdk
import streamlit as st

from client import (
    DEFAULT_API_URL,
    DEFAULT_TIMEOUT_S,
    ApiClientError,
    ApiError,
    ApiServerError,
    ApiTimeout,
    ApiUnavailable,
    BestGuess,
    Landmark,
    LandmarksClient,
    SearchResult,
)

log = logging.getLogger(__name__)

# Longest side asked of the API for thumbnails: sharp on a 2x phone screen in a ~180 px cell
# while keeping each photo a few tens of kB.
THUMB_SIZE = 384
# The answer in the primary colour, its runner-ups in grey (RGBA for deck.gl), at most this many.
MAP_BEST_RGBA = [180, 83, 42, 240]
MAP_OTHER_RGBA = [107, 114, 128, 200]
MAP_RUNNER_UPS = 3
MAP_HEIGHT = 360

# Gallery photos come in every aspect ratio; cropping thumbnails to one shape keeps grid rows
# even. Scoped by the `st-key-<key>` class Streamlit gives keyed containers.
_THUMB_CSS = """
<style>
.st-key-match-grid img, .st-key-landmark-grid img, .st-key-excluded-grid img {
  aspect-ratio: 4 / 3; object-fit: cover; border-radius: 0.5rem;
}
</style>
"""


def api_client() -> LandmarksClient:
    """The API client for one page run, from `LANDMARKS_API_URL` / `LANDMARKS_API_TIMEOUT` read at
    call time, so a changed environment (tests, a redeploy) takes effect on the next run. Use it in
    a `with` block: its connections close when the run ends."""
    return LandmarksClient(
        os.environ.get("LANDMARKS_API_URL") or DEFAULT_API_URL,
        float(os.environ.get("LANDMARKS_API_TIMEOUT") or DEFAULT_TIMEOUT_S),
    )


def photo_boxes_wanted() -> bool:
    """`WEB_PHOTO_BOXES` (read at call time, as the API's address is): whether to look for the landmark's
    box and any other landmark in the visitor's photo after the answer (on by default)."""
    return os.environ.get("WEB_PHOTO_BOXES", "1").strip().lower() not in ("0", "false", "no", "off")


def api_error_message(exc: ApiError, api_url: str) -> str:
    """A sentence for a person, in the page's own words: the API's address and its raw `detail`
    go to the log (for the operator), not on screen."""
    log.warning("API call to %s failed: %r", api_url, exc)
    if isinstance(exc, ApiUnavailable):
        return "The search service is not answering; try again in a minute."
    if isinstance(exc, ApiTimeout):
        return "The search service took too long to answer. Please try again."
    if isinstance(exc, ApiClientError) and exc.status == 429:
        wait = f"{math.ceil(exc.retry_after)} seconds" if exc.retry_after else "a few seconds"
        return f"Too many searches at once. Please wait {wait} and try again."
    if isinstance(exc, ApiClientError):
        return {
            400: "This file could not be read as a photo. Please send a JPEG, PNG or WebP photo.",
            413: "This photo is too large. Please send a smaller one.",
            415: "This file is not an image. Please send a JPEG, PNG or WebP photo.",
        }.get(exc.status, "The search service refused the request. Please try again.")
    if isinstance(exc, ApiServerError) and exc.status == 503:
        return "The search service is still loading its model and gallery. Try again in a moment."
    return "The search service ran into a problem. Please try again in a minute."


def admin_error_message(exc: ApiError, api_url: str) -> str:
    """Like `api_error_message`, for gallery changes (the write endpoints need the API key). The
    operator's page keeps the API's `detail` for the refusals the operator can act on (which key,
    which field); the rest reads like the search page."""
    if isinstance(exc, ApiClientError):
        prefix = {
            401: "This needs the operator's API key (the server's LANDMARKS_API_KEY).",
            403: "The server refused the change: the API key is wrong, or gallery changes are disabled on the server.",
            404: "That landmark is not in the gallery (any more).",
            413: "The upload is too large for the server.",
            422: "The server did not accept these details.",
        }.get(exc.status, "The server refused the change.")
        return f"{prefix} ({exc.detail})"
    return api_error_message(exc, api_url)


def show_api_error(exc: ApiError, api_url: str) -> None:
    """The error as the page's own sentence, and a way to try again when that can help (the API may be
    back by then); a file the API cannot read would fail the same way again, so it gets none."""
    st.error(api_error_message(exc, api_url), icon=":material/error:")
    if isinstance(exc, ApiClientError) and exc.status != 429:
        return
    # A click reruns the page whatever the button returns; the key only keeps two errors on one page apart.
    st.button("Try again", icon=":material/refresh:", key=f"retry-{id(exc)}")


@st.cache_data(ttl=600, max_entries=2000, show_spinner=False)
def _photo_bytes(url: str, size: int, api_url: str, timeout_s: float) -> bytes:
    # Cached across reruns and visitors: a gallery photo does not change while the index stands,
    # and the 10-minute TTL bounds staleness after a rebuild. Errors raise and are not cached.
    with LandmarksClient(api_url, timeout_s) as client:
        return client.image(url, size)


def gallery_photo(url: str, client: LandmarksClient, alt: str, caption: str | None = None) -> None:
    """A gallery photo, or a quiet placeholder when that one photo cannot be fetched (one broken
    thumbnail should not take the whole page down)."""
    try:
        data = _photo_bytes(url, THUMB_SIZE, client.base_url, client.timeout_s)
    except ApiError:
        st.caption(f":material/broken_image: {caption or alt} (photo unavailable)")
        return
    st.image(data, caption=caption, width="stretch", alt=alt)


def thumbnail_style() -> None:
    st.html(_THUMB_CSS)


def confidence_percent(confidence: float) -> str:
    """The confidence as a person reads it, rounded down so that a guess never shows as a certain
    "100%", and never "0%" either: 0.998 -> "over 99%", 0.876 -> "87%", 0.004 -> "under 1%"."""
    if confidence > 0.99:
        return "over 99%"
    if confidence < 0.01:
        return "under 1%"
    # round() first: 0.29 * 100 is 28.999999999999996 in floating point.
    return f"{math.floor(round(confidence * 100, 6))}%"


def osm_link(lat: float, lon: float) -> str:
    """The place on openstreetmap.org, pinned: works wherever the map tiles here do not load."""
    return f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map=16/{lat:.5f}/{lon:.5f}"


def language() -> str:
    """The visitor's language ("ru" for a ru-RU browser), for landmark names the gallery has in it
    (name_ru, city_ru... metadata); the page's own sentences stay English."""
    locale = st.context.locale or ""
    return locale.split("-")[0].lower()


def place_line(landmark: Landmark, lang: str = "") -> str | None:
    """'Agra, India · 27.18, 78.04 · [Open in OpenStreetMap](…)' (markdown) with what is known, for
    under the verdict: readable and linked even when the map cannot draw (offline)."""
    place = landmark.place_in(lang)
    parts = [place] if place else []
    if landmark.has_coordinates:
        parts.append(f"{landmark.lat:.2f}, {landmark.lon:.2f}")
        parts.append(f"[Open in OpenStreetMap]({osm_link(landmark.lat, landmark.lon)})")
    return f":material/location_on: {' · '.join(parts)}" if parts else None


def match_grid(result: SearchResult, client: LandmarksClient, lang: str = "") -> None:
    """The top-k gallery photos, best first, reflowing to one or two columns on a phone. Captioned
    by rank and name only: the raw similarities (0.4 to 0.8 for right and wrong landmarks alike)
    would compete with the verdict's confidence, the one number meant for a person."""
    with st.container(key="match-grid"):
        with st.grid(min_column_width=150, gap="small"):
            for rank, match in enumerate(result.matches, start=1):
                name = result.name_in(match.landmark_id, match.name, lang)
                gallery_photo(match.image_url, client, name, f"{rank}. {name}")


def landmark_confidence(landmark: Landmark, best: BestGuess) -> str:
    """A landmark's confidence as a percent: the answer's is the verdict's; a runner-up's is the API's
    share for it (not its similarity, whose bars looked almost as full as the answer's and read as
    'almost as likely'); "—" from an API that does not give one."""
    if landmark.landmark_id == best.landmark_id:
        return confidence_percent(best.confidence)
    return "—" if landmark.confidence is None else confidence_percent(landmark.confidence)


def landmark_table(landmarks: list[Landmark], best: BestGuess, lang: str = "") -> None:
    """The distinct landmarks among the matches, ranked by the API, each with its confidence."""
    # Confidence right after the name: on a phone only the first two columns fit without scrolling.
    frame = pd.DataFrame(
        {
            "Landmark": [lm.name_in(lang) for lm in landmarks],
            "Confidence": [landmark_confidence(lm, best) for lm in landmarks],
            "Place": [lm.place_in(lang) or "—" for lm in landmarks],
            "Photos": [lm.image_count for lm in landmarks],
        }
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={"Photos": st.column_config.NumberColumn("Photos in gallery", format="%d")},
    )


# Where a label may sit beside its dot, in order of preference: (text anchor, alignment baseline, the
# direction of its pixel offset). Right of the dot reads first; the others are for close neighbours.
LABEL_SIDES = (
    ("start", "center", (1, 0)),
    ("end", "center", (-1, 0)),
    ("middle", "bottom", (0, -1)),
    ("middle", "top", (0, 1)),
)
LABEL_GAP_PX = 5
# deck.gl's TextLayer draws a glyph about this wide for each pixel of size (its default font, sans-serif).
GLYPH_WIDTH = 0.6


@dataclass(frozen=True)
class MapLabel:
    anchor: str
    baseline: str
    offset: tuple[int, int]


def to_pixels(lat: float, lon: float, zoom: float) -> tuple[float, float]:
    """A point's position in Web Mercator pixels at ZOOM (the world is 256 * 2**zoom pixels wide)."""
    world = 256 * 2**zoom
    lat = max(-85.0, min(85.0, lat))
    y = (1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2
    return (lon + 180) / 360 * world, y * world


def place_labels(points: list[tuple[float, float, str, int, int]], zoom: float) -> list[MapLabel | None]:
    """A side for each point's label (lat, lon, text, dot radius px, text size px), so that no two
    labels cover each other or another dot: greedy, in the order given (the answer first), each on the
    first free side of LABEL_SIDES. A label with no free side is left out (None): its name is still in
    the tooltip and the table, and an unreadable pile of names helps nobody."""
    pixels = [to_pixels(lat, lon, zoom) for lat, lon, *_ in points]
    dots = [(x - r, y - r, x + r, y + r) for (x, y), (*_, r, _) in zip(pixels, points, strict=True)]
    taken: list[tuple[float, float, float, float]] = []
    labels: list[MapLabel | None] = []
    for index, ((x, y), (_, _, text, radius, size)) in enumerate(zip(pixels, points, strict=True)):
        width, height = len(text) * size * GLYPH_WIDTH + 8, size + 4  # with the white ground's padding
        chosen = None
        for anchor, baseline, (dx, dy) in LABEL_SIDES:
            ox, oy = dx * (radius + LABEL_GAP_PX), dy * (radius + LABEL_GAP_PX)
            left = {"start": x + ox, "end": x + ox - width, "middle": x - width / 2}[anchor]
            top = {"center": y - height / 2, "bottom": y + oy - height, "top": y + oy}[baseline]
            box = (left, top, left + width, top + height)
            others = taken + [dot for other, dot in enumerate(dots) if other != index]
            if not any(_overlap(box, other) for other in others):
                chosen = MapLabel(anchor, baseline, (ox, oy))
                taken.append(box)
                break
        labels.append(chosen)
    return labels


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def landmark_map(best: Landmark, others: list[Landmark], lang: str = "") -> None:
    """The answer (which has coordinates), labelled, with at most MAP_RUNNER_UPS runner-ups
    smaller and in grey; labels of landmarks that stand close together go to free sides (place_labels)."""
    placed = [best] + [lm for lm in others if lm.has_coordinates][:MAP_RUNNER_UPS]
    # Centred on the answer, zoomed out just enough for the runner-ups: at zoom z the world is
    # 256 * 2**z pixels wide, and the farthest runner-up should sit inside the map's height.
    farthest = max([abs(lm.lat - best.lat) for lm in placed] + [abs(lm.lon - best.lon) for lm in placed])
    zoom = min(13.0, math.log2(MAP_HEIGHT * 360 / (2 * 256 * farthest * 1.8))) if farthest else 13.0
    names = [lm.name_in(lang) for lm in placed]
    radii, sizes = [8] + [5] * (len(placed) - 1), [15] + [12] * (len(placed) - 1)
    labels = place_labels(
        [(lm.lat, lm.lon, name, r, size) for lm, name, r, size in zip(placed, names, radii, sizes, strict=True)], zoom
    )
    frame = pd.DataFrame(
        {
            "name": names,
            "label": [name if label else "" for name, label in zip(names, labels, strict=True)],
            "lat": [lm.lat for lm in placed],
            "lon": [lm.lon for lm in placed],
            "color": [MAP_BEST_RGBA] + [MAP_OTHER_RGBA] * (len(placed) - 1),
            "size": sizes,
            "anchor": [label.anchor if label else "start" for label in labels],
            "baseline": [label.baseline if label else "center" for label in labels],
            "offset": [list(label.offset) if label else [0, 0] for label in labels],
        }
    )
    position = ["lon", "lat"]
    # Runner-ups first, the answer drawn over them. A 1 m radius clamped to a few pixels: a dot of
    # the same size at every zoom; each label on a white ground, readable without map tiles.
    layers = []
    for points, radius in ((frame.iloc[1:], radii[-1]), (frame.iloc[:1], radii[0])):
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                points,
                get_position=position,
                get_fill_color="color",
                get_radius=1,
                radius_min_pixels=radius,
                stroked=True,
                get_line_color=[255, 255, 255],
                line_width_min_pixels=1,
            )
        )
        layers.append(
            pdk.Layer(
                "TextLayer",
                points[points["label"] != ""],
                get_position=position,
                get_text="label",
                # deck.gl draws ASCII only by default: "auto" builds the atlas from the names (Cyrillic...).
                character_set=pdk.types.String("auto"),
                get_color="color",
                get_size="size",
                get_text_anchor="anchor",
                get_alignment_baseline="baseline",
                get_pixel_offset="offset",
                background=True,
                get_background_color=[255, 255, 255, 230],
                background_padding=[4, 2],
            )
        )
    view = pdk.ViewState(latitude=best.lat, longitude=best.lon, zoom=zoom)
    st.pydeck_chart(pdk.Deck(layers=layers, initial_view_state=view, tooltip={"text": "{name}"}), height=MAP_HEIGHT)
