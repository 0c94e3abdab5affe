"""Streamlit building blocks shared by the pages: error messages, photo fetching, result views."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from client import (
    DEFAULT_API_URL,
    DEFAULT_TIMEOUT_S,
    ApiClientError,
    ApiError,
    ApiServerError,
    ApiTimeout,
    ApiUnavailable,
    Landmark,
    LandmarksClient,
    Match,
)

# Longest side asked of the API for thumbnails: sharp on a 2x phone screen in a ~180 px cell
# while keeping each photo a few tens of kB.
THUMB_SIZE = 384
# Best guess in the primary colour, the other candidates in grey (RGBA for st.map).
MAP_BEST_COLOR = "#b4532aee"
MAP_OTHER_COLOR = "#6b728099"

# Gallery photos come in every aspect ratio; cropping thumbnails to one shape keeps grid rows
# even. Scoped by the `st-key-<key>` class Streamlit gives keyed containers.
_THUMB_CSS = """
<style>
.st-key-match-grid img, .st-key-landmark-grid img {
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


def api_error_message(exc: ApiError, api_url: str) -> str:
    """A sentence for a person, not a stack trace; the API's own `detail` when it gave one."""
    if isinstance(exc, ApiUnavailable):
        return (
            f"The landmark search service is not reachable at {api_url}. "
            "It may be stopped or still starting; please try again in a minute."
        )
    if isinstance(exc, ApiTimeout):
        return "The landmark search service took too long to answer. Please try again."
    if isinstance(exc, ApiClientError):
        prefix = {
            400: "This file could not be read as a photo.",
            413: "This photo is too large.",
            415: "This file is not an image. Please send a JPEG, PNG or WebP photo.",
        }.get(exc.status, "The search service refused the request.")
        return f"{prefix} ({exc.detail})"
    if isinstance(exc, ApiServerError) and exc.status == 503:
        return "The search service is still loading its model and gallery. Try again in a moment."
    if isinstance(exc, ApiServerError):
        return f"The search service ran into a problem: {exc.detail}"
    return f"Something went wrong talking to the search service: {exc}"


def admin_error_message(exc: ApiError, api_url: str) -> str:
    """Like `api_error_message`, for gallery changes (the write endpoints need the API key)."""
    if isinstance(exc, ApiClientError):
        prefix = {
            401: "This needs the operator's API key (the server's LANDMARKS_API_KEY).",
            403: "The server refused the change: the API key is wrong, or gallery changes are "
            "disabled on the server.",
            404: "That landmark is not in the gallery (any more).",
            413: "The upload is too large for the server.",
            422: "The server did not accept these details.",
        }.get(exc.status, "The server refused the change.")
        return f"{prefix} ({exc.detail})"
    return api_error_message(exc, api_url)


def show_api_error(exc: ApiError, api_url: str) -> None:
    st.error(api_error_message(exc, api_url), icon=":material/error:")


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


def match_grid(matches: list[Match], client: LandmarksClient) -> None:
    """The top-k gallery photos, best first, reflowing to one or two columns on a phone."""
    with st.container(key="match-grid"):
        with st.grid(min_column_width=150, gap="small"):
            for rank, match in enumerate(matches, start=1):
                gallery_photo(
                    match.image_url, client, match.name, f"{rank}. {match.name} · {match.score:.2f}"
                )


def landmark_table(landmarks: list[Landmark]) -> None:
    """The distinct landmarks among the candidates, ranked by the API."""
    # Similarity right after the name: on a phone only the first two columns fit without scrolling.
    frame = pd.DataFrame(
        {
            "Landmark": [lm.name for lm in landmarks],
            "Similarity": [lm.score or 0.0 for lm in landmarks],
            "Place": [lm.place or "—" for lm in landmarks],
            "Photos": [lm.image_count for lm in landmarks],
        }
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "Similarity": st.column_config.ProgressColumn(
                "Similarity", min_value=0.0, max_value=1.0, format="%.2f", width="small"
            ),
            "Photos": st.column_config.NumberColumn("Photos in gallery", format="%d"),
        },
    )


def landmark_map(landmarks: list[Landmark], best_id: str | None) -> None:
    """The matched landmarks that have coordinates; the best guess stands out."""
    placed = [lm for lm in landmarks if lm.has_coordinates]
    if not placed:
        st.caption("None of these landmarks has coordinates in the gallery.")
        return
    frame = pd.DataFrame(
        {
            "name": [lm.name for lm in placed],
            "lat": [lm.lat for lm in placed],
            "lon": [lm.lon for lm in placed],
            "color": [
                MAP_BEST_COLOR if lm.landmark_id == best_id else MAP_OTHER_COLOR for lm in placed
            ],
        }
    )
    # A fixed radius in metres reads as a dot at country zoom and stays visible when zoomed in.
    st.map(frame, latitude="lat", longitude="lon", color="color", size=30000, height=360)
