"""Gallery page: which landmarks the index knows, with photo counts and a sample photo; a card opens
the landmark's own view (`?landmark=<id>`): its place, its photos, and those left out of matching."""

from __future__ import annotations

import math

import streamlit as st

from client import ApiClientError, ApiError, Landmark, LandmarksClient
from web.components import (
    api_client,
    gallery_photo,
    landmark_map,
    language,
    place_line,
    show_api_error,
    thumbnail_style,
)

# Cards per page: each card fetches a thumbnail, and a GLDv2 gallery has thousands of landmarks.
PAGE_SIZE = 24
# Photos shown at first on a landmark's view; the rest behind a button (each is a thumbnail fetch).
LANDMARK_PHOTOS = 24
# How the page names why a photo is left out of matching (the API's `reason`).
EXCLUSION_REASONS = {
    "no_landmark": "Does not look like a landmark",
    "other_landmark": "Looks like another landmark",
    "operator": "Excluded by an operator",
}

EMPTY_GALLERY_HELP = """\
The gallery is empty, so there is nothing to recognise yet. Get one of these, then restart the
API with `landmarks serve --index data/index`:

- **Your own photos**: one folder per landmark (`GALLERY_DIR/<landmark_id>/*.jpg`, optionally a
  `landmarks.csv` with names and coordinates), indexed with
  `landmarks index build GALLERY_DIR --out data/index`.
- **Google Landmarks v2**: `landmarks data gldv2` downloads photos and writes a gallery to
  `data/gldv2/gallery`; index it with `landmarks index build data/gldv2/gallery --out data/index`.
"""


def landmark_card(landmark: Landmark, client: LandmarksClient, lang: str) -> None:
    name = landmark.name_in(lang)
    with st.container(border=True, gap="xsmall"):
        if landmark.sample_image_url:
            gallery_photo(landmark.sample_image_url, client, name)
        st.markdown(f"**{name}**")
        count = landmark.image_count or 0
        details = [landmark.place_in(lang), f"{count} photo{'s' if count != 1 else ''}"]
        st.caption(" · ".join(part for part in details if part))
        if st.button("Open", key=f"open-{landmark.landmark_id}", icon=":material/open_in_full:"):
            st.query_params["landmark"] = landmark.landmark_id
            st.rerun()


def landmark_view(client: LandmarksClient, landmark_id: str) -> None:
    """One landmark: its place (map and place line), its photos, and its photos left out of matching
    with the reason for each."""
    if st.button("All landmarks", icon=":material/arrow_back:", key="back-to-gallery"):
        del st.query_params["landmark"]
        st.rerun()
    try:
        landmark = client.landmark(landmark_id)
    except ApiClientError as exc:
        if exc.status != 404:
            show_api_error(exc, client.base_url)
            return
        st.warning(f"The gallery has no landmark with the id “{landmark_id}”.", icon=":material/search_off:")
        return
    except ApiError as exc:
        show_api_error(exc, client.base_url)
        return
    lang = language()
    name = landmark.name_in(lang)
    st.header(name, anchor=False)
    line = place_line(landmark, lang)
    if line:
        st.markdown(line)
    if landmark.has_coordinates:
        landmark_map(landmark, [], lang)
    st.subheader(f"{len(landmark.images)} photo{'s' if len(landmark.images) != 1 else ''}", anchor=False)
    shown = landmark.images if st.session_state.get("all-photos") == landmark_id else landmark.images[:LANDMARK_PHOTOS]
    with st.container(key="landmark-grid"):
        with st.grid(min_column_width=150, gap="small"):
            for image in shown:
                gallery_photo(image.image_url, client, name)
    if len(shown) < len(landmark.images):
        if st.button(f"Show all {len(landmark.images)} photos", key="show-all-photos"):
            st.session_state["all-photos"] = landmark_id
            st.rerun()
    if landmark.excluded:
        st.subheader("Left out of matching", anchor=False)
        st.caption(
            "These photos stay in the gallery but are never matched: `landmarks index clean` found that they do "
            "not show this landmark, or an operator excluded them. `landmarks index clean --keep IMAGE_ID` brings "
            "one back."
        )
        with st.container(key="excluded-grid"):
            with st.grid(min_column_width=150, gap="small"):
                for image in landmark.excluded:
                    why = EXCLUSION_REASONS.get(image.reason, image.reason)
                    gallery_photo(image.image_url, client, name, f"#{image.image_id} · {why}")


def render(client: LandmarksClient) -> None:
    thumbnail_style()
    st.title("Gallery", anchor=False)
    try:
        health = client.health()
    except ApiError as exc:
        show_api_error(exc, client.base_url)
        return
    if not health.ready:
        st.info(
            "The search service is still loading its model and gallery. Refresh in a moment.",
            icon=":material/hourglass_top:",
        )
        return
    if health.gallery_size == 0:
        st.info(EMPTY_GALLERY_HELP, icon=":material/photo_library:")
        return
    landmark_id = st.query_params.get("landmark")
    if landmark_id:
        landmark_view(client, landmark_id)
        return
    st.caption(f"{health.landmark_count} landmarks · {health.gallery_size} photos")
    listing(client, health.landmark_count)
    # The model string means something to the operator only: kept out of a visitor's way.
    with st.expander("For operators", icon=":material/engineering:"):
        st.caption(f"Model: {health.model}")


def listing(client: LandmarksClient, landmark_count: int) -> None:
    """The search box and one page of landmark cards."""
    query = st.text_input(
        "Find a landmark",
        placeholder="Search by name, e.g. taj",
        type="search",
        live=True,
        icon=":material/search:",
        label_visibility="collapsed",
    ).strip()
    try:
        found = client.landmarks(query)
    except ApiError as exc:
        show_api_error(exc, client.base_url)
        return
    if not found.landmarks:
        st.info(f"No landmark in the gallery matches “{query}”.", icon=":material/search_off:")
        return
    if query:
        st.caption(f"{found.total} of {landmark_count} landmarks match “{query}”")
    pages = math.ceil(len(found.landmarks) / PAGE_SIZE)
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1)
    start = (page - 1) * PAGE_SIZE
    with st.container(key="landmark-grid"):
        with st.grid(min_column_width=160, gap="small"):
            for landmark in found.landmarks[start : start + PAGE_SIZE]:
                landmark_card(landmark, client, language())


# One client per page run: its connections close when the run ends.
with api_client() as page_client:
    render(page_client)
