"""Search page: a photo in, the landmark it shows out."""

from __future__ import annotations

import hashlib
import logging

import streamlit as st

from client import ApiError, LandmarksClient, Photo, SearchRequest, SearchResult
from client.drawing import boxes_to_draw, photo_with_boxes
from web.components import (
    api_client,
    confidence_percent,
    landmark_map,
    landmark_table,
    language,
    match_grid,
    photo_boxes_wanted,
    place_line,
    show_api_error,
    thumbnail_style,
)

log = logging.getLogger(__name__)
UPLOAD, CAMERA = "Upload a photo", "Take a photo"
SOURCE_ICONS = {UPLOAD: ":material/upload:", CAMERA: ":material/photo_camera:"}
# How many of the closest landmarks to name when the photo is not one we know.
CLOSEST_SHOWN = 3


def photo_input() -> tuple[bytes, str, str] | None:
    """The visitor's photo as (bytes, filename, MIME type), from the uploader or the camera.

    Only the chosen widget is rendered so the browser does not ask for the camera until the
    visitor picks it.
    """
    source = st.segmented_control(
        "Photo source",
        [UPLOAD, CAMERA],
        default=UPLOAD,
        required=True,
        format_func=lambda option: f"{SOURCE_ICONS[option]} {option}",
        label_visibility="collapsed",
        width="stretch",
    )
    if source == CAMERA:
        photo = st.camera_input("Point your camera at the landmark")
    else:
        # No `type=` filter: Streamlit shows a file of another type only as a red icon, with the reason in a
        # tooltip. Every file goes to the API instead, which reads what it can (HEIC, GIF too) and says why
        # it cannot read the rest, and the page shows that in a sentence (api_error_message).
        photo = st.file_uploader("Photo of a landmark", help="A JPEG, PNG, WebP or HEIC photo, one at a time.")
    if photo is None:
        return None
    return photo.getvalue(), photo.name, photo.type or "application/octet-stream"


def run_search(client: LandmarksClient, image: bytes, filename: str, mime_type: str, k: int) -> SearchResult | None:
    """Search once per (photo, k, API): Streamlit reruns the page on every interaction and the
    answer for the same photo does not change. Shows the error and returns None on failure."""
    key = (hashlib.sha256(image).hexdigest(), k, client.base_url)
    cached = st.session_state.get("last_search")
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with st.spinner("Looking for the landmark…"):
            result = client.search(SearchRequest(Photo(filename, image, mime_type), k))
    except ApiError as exc:
        show_api_error(exc, client.base_url)
        return None
    st.session_state["last_search"] = (key, result)
    return result


def distance_text(km: float) -> str:
    """ "120 m", "2.4 km", "1,250 km": how far a person reads it."""
    if km < 1:
        return f"{max(10, round(km * 1000, -1)):.0f} m"
    return f"{km:.1f} km" if km < 10 else f"{km:,.0f} km"


def verdict(result: SearchResult, lang: str = "") -> None:
    """The answer: the best landmark with its confidence and place, or 'not a landmark I know'
    (a refusal names no landmark as the answer, in a card of its own)."""
    if result.notice:
        st.info(result.notice, icon=":material/info:")
    best = result.landmark
    if best is not None:
        info = result.landmark_info(best.landmark_id)
        with st.container(border=True, key="verdict"):
            st.caption("This looks like")
            st.header(result.name_in(best.landmark_id, best.name, lang), anchor=False)
            line = place_line(info, lang) if info is not None else None
            if line:
                st.markdown(line)
            if info is not None and info.distance_km is not None:
                st.caption(f":material/my_location: Your photo was taken {distance_text(info.distance_km)} from it.")
            st.progress(best.confidence, text=f"Confidence {confidence_percent(best.confidence)}")
        return
    if not result.matches:
        # Nothing to compare against (the notice, if any, already said why).
        return
    closest = ", ".join(f"**{lm.name_in(lang)}**" for lm in result.landmarks[:CLOSEST_SHOWN])
    with st.container(border=True, key="refusal"):
        if result.not_a_landmark:
            st.warning("This doesn't look like a landmark.", icon=":material/help:")
            st.markdown(
                f"The photo shows no building or place I can recognise. The closest landmarks in the gallery are "
                f"{closest}, but none is a match."
            )
        else:
            st.warning("Not a landmark I know.", icon=":material/help:")
            st.markdown(f"The closest landmarks in the gallery are {closest}, but none is a confident match.")


def results(result: SearchResult, client: LandmarksClient, lang: str = "") -> None:
    if not result.matches:
        return
    best = result.landmark
    if best is None:
        # A refusal: the photos are what the gallery holds nearest, not candidates for an answer,
        # so no table of landmarks and no map pins.
        st.subheader("Closest gallery photos, not a match", anchor=False)
        match_grid(result, client, lang)
        return
    st.subheader("Most similar gallery photos", anchor=False)
    match_grid(result, client, lang)
    st.subheader("Landmarks among the matches", anchor=False)
    landmark_table(result.landmarks, best, lang)
    info = result.landmark_info(best.landmark_id)
    if info is not None and info.has_coordinates:
        st.subheader("Where it is", anchor=False)
        landmark_map(info, [lm for lm in result.landmarks if lm.landmark_id != best.landmark_id], lang)


def render(client: LandmarksClient) -> None:
    thumbnail_style()
    st.title("Which landmark is this?", anchor=False)
    st.caption("Send a photo of a monument or building: you get its name and the most similar gallery photos.")
    photo = photo_input()
    k = st.slider("Matches to show", min_value=1, max_value=24, value=8)
    if photo is None:
        # On a phone the top navigation folds into a menu: offer the gallery in plain sight.
        st.page_link("views/gallery.py", label="See which landmarks I know", icon=":material/photo_library:")
        return
    image, filename, mime_type = photo
    if not image:
        st.error("This file is empty. Please choose a photo.", icon=":material/error:")
        return
    # Search before showing the photo: a file the API refuses (corrupt, not an image) would also
    # fail to render here, and the API's explanation is the useful thing to show.
    result = run_search(client, image, filename, mime_type, k)
    if result is None:
        return
    # The answer first: on a phone the columns stack and the visitor already knows their photo.
    answer, photo_column = st.columns([3, 2], gap="medium", vertical_alignment="center")
    lang = language()
    with answer:
        verdict(result, lang)
    with photo_column:
        photo_slot = st.empty()
        photo_slot.image(image, caption="Your photo", width="stretch")
    results(result, client, lang)
    if result.landmark is not None and photo_boxes_wanted():
        # Last, so the verdict and the matches are on screen first: where the landmark is in the photo.
        show_box(photo_slot, client, photo, result, lang)


def show_box(slot, client: LandmarksClient, photo: tuple[bytes, str, str], result: SearchResult, lang: str) -> None:
    """The visitor's photo, in SLOT, with the answered landmark's box drawn and every other landmark found
    in it, when that points at part of the photo. A second search (box and find_all: its crops take several
    times a search's time), once per photo, after the verdict and the matches are on screen; when it
    fails, the plain photo stays: the boxes are an extra, not the answer."""
    image, filename, mime_type = photo
    key = (hashlib.sha256(image).hexdigest(), client.base_url)
    cached = st.session_state.get("last_boxes")
    if cached is not None and cached[0] == key:
        located = cached[1]
    else:
        try:
            with st.spinner("Looking for the landmark in your photo…"):
                located = client.search(SearchRequest(Photo(filename, image, mime_type), 1, box=True, find_all=True))
        except ApiError as exc:
            log.warning("the box search failed: %r", exc)
            return
        st.session_state["last_boxes"] = (key, located)
    best = result.landmark
    if located.landmark is None or best is None or located.landmark.landmark_id != best.landmark_id:
        return
    boxes = boxes_to_draw(located, lang)
    boxed = photo_with_boxes(image, boxes) if boxes else None
    if boxed is None:
        return
    others = located.also_found
    caption = f"Your photo: {boxes[0][1]} is in the frame"
    if others:
        caption += "; also in it: " + ", ".join(
            f"{located.name_in(d.landmark_id, d.name, lang)} ({confidence_percent(d.confidence)})" for d in others
        )
    slot.image(boxed, caption=caption, width="stretch")


# One client per page run: its connections close when the run ends.
with api_client() as page_client:
    render(page_client)
