"""Gallery page: which landmarks the index knows, with photo counts and a sample photo."""

from __future__ import annotations

import math

import streamlit as st

from client import ApiError, Landmark, LandmarksClient
from web.components import api_client, gallery_photo, show_api_error, thumbnail_style

# Cards per page: each card fetches a thumbnail, and a GLDv2 gallery has thousands of landmarks.
PAGE_SIZE = 24

EMPTY_GALLERY_HELP = """\
The gallery is empty, so there is nothing to recognise yet. Get one of these, then restart the
API with `landmarks serve --index data/index`:

- **Your own photos**: one folder per landmark (`GALLERY_DIR/<landmark_id>/*.jpg`, optionally a
  `landmarks.csv` with names and coordinates), indexed with
  `landmarks index build GALLERY_DIR --out data/index`.
- **Google Landmarks v2**: `landmarks data gldv2` downloads photos and writes a gallery to
  `data/gldv2/gallery`; index it with `landmarks index build data/gldv2/gallery --out data/index`.
"""


def landmark_card(landmark: Landmark, client: LandmarksClient) -> None:
    with st.container(border=True, gap="xsmall"):
        if landmark.sample_image_url:
            gallery_photo(landmark.sample_image_url, client, landmark.name)
        st.markdown(f"**{landmark.name}**")
        count = landmark.image_count or 0
        details = [landmark.place, f"{count} photo{'s' if count != 1 else ''}"]
        st.caption(" · ".join(part for part in details if part))


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
                landmark_card(landmark, client)


# One client per page run: its connections close when the run ends.
with api_client() as page_client:
    render(page_client)
