"""Add landmark page: the operator adds a landmark and its photos to the gallery with the API key.

Searches see the new photos at once (the API indexes them on arrival), so the page ends by
pointing at the Search and Gallery pages.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import streamlit as st

from client import (
    LANDMARK_ID_MAX_LENGTH,
    LANDMARK_ID_PATTERN,
    LANDMARK_TEXT_MAX_LENGTH,
    ApiClientError,
    ApiError,
    Landmark,
    LandmarksClient,
    Photo,
    RejectedPhoto,
)
from web.components import admin_error_message, api_client

# The API's rule for landmark ids, checked here so a typo gets a sentence instead of a round trip
# and a 422.
LANDMARK_ID = re.compile(LANDMARK_ID_PATTERN)

# Session state. The key lives in the session only (server memory, this browser tab's session):
# never in the URL, a log or on disk. It is copied out of the widget because Streamlit drops a
# widget's state when the person visits another page.
KEY = "admin_api_key"
KEY_WIDGET = "admin_api_key_widget"
# Bumped after a successful upload so that the form comes back empty for the next landmark.
ROUND = "add_form_round"
REPORT = "add_report"
# The id of an existing landmark the person was offered to add the photos to (after a 409).
OFFER = "add_existing_offer"


@dataclass
class Report:
    """What one submission did, kept in the session so it survives the rerun that clears the form."""

    landmark_id: str
    name: str
    created: bool
    photos: int
    added: int = 0
    rejected: list[RejectedPhoto] = field(default_factory=list)
    # Why the upload stopped before every photo was sent, when it did.
    error: str | None = None


@dataclass(frozen=True)
class Details:
    landmark: Landmark  # as typed: checked by `problems` before it is sent
    photos: list[Photo]


def suggested_id(name: str) -> str:
    """'Qutb Minar' -> 'qutb_minar': accents folded to ASCII, every other run of characters
    becomes one '_' ('' for a name with no Latin letters or digits)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:LANDMARK_ID_MAX_LENGTH]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def api_key_input() -> str:
    if KEY_WIDGET not in st.session_state:
        st.session_state[KEY_WIDGET] = st.session_state.get(KEY, "")
    key = st.text_input(
        "API key",
        type="password",
        key=KEY_WIDGET,
        help="The server's LANDMARKS_API_KEY. Kept only for this browser session.",
    )
    st.session_state[KEY] = key
    return key.strip()


def details_form() -> Details:
    """The landmark's fields and photos; widget keys carry the form round so a bump empties them."""
    round_ = st.session_state.get(ROUND, 0)
    name = st.text_input(
        "Name", key=f"add-name-{round_}", max_chars=LANDMARK_TEXT_MAX_LENGTH, placeholder="e.g. Qutb Minar"
    )
    suggestion = suggested_id(name.strip())
    typed_id = st.text_input(
        "Landmark id",
        key=f"add-id-{round_}",
        max_chars=LANDMARK_ID_MAX_LENGTH,
        placeholder=suggestion or "e.g. qutb_minar",
        help="Letters, digits, '_', '-' and '.', starting with a letter or digit. "
        "Leave it empty to use the one made from the name.",
    ).strip()
    if not typed_id and suggestion:
        st.caption(f"Id from the name: `{suggestion}`")
    city_column, country_column = st.columns(2)
    city = city_column.text_input("City", key=f"add-city-{round_}", max_chars=LANDMARK_TEXT_MAX_LENGTH)
    country = country_column.text_input("Country", key=f"add-country-{round_}", max_chars=LANDMARK_TEXT_MAX_LENGTH)
    lat_column, lon_column = st.columns(2)
    lat, lon = (
        column.number_input(
            f"{label} (optional)",
            min_value=-limit,
            max_value=limit,
            value=None,
            format="%.5f",
            key=f"add-{key}-{round_}",
        )
        for column, label, limit, key in (
            (lat_column, "Latitude", 90.0, "lat"),
            (lon_column, "Longitude", 180.0, "lon"),
        )
    )
    # Any file type, as on the search page: the API says why it cannot read one, and the report lists it.
    uploads = st.file_uploader(
        "Photos",
        accept_multiple_files=True,
        key=f"add-photos-{round_}",
        help="JPEG, PNG, WebP or HEIC. Several photos from different angles make it easier to recognise.",
    )
    return Details(
        Landmark(
            landmark_id=typed_id or suggestion,
            name=name.strip(),
            city=city.strip() or None,
            country=country.strip() or None,
            lat=lat,
            lon=lon,
        ),
        photos=[
            Photo(upload.name, upload.getvalue(), upload.type or "application/octet-stream") for upload in uploads or []
        ],
    )


def problems(key: str, details: Details) -> list[str]:
    """What to fix before anything is sent."""
    found = []
    if not key:
        found.append("Enter the API key (the server's LANDMARKS_API_KEY).")
    elif not (key.isascii() and key.isprintable()):
        # An HTTP header cannot carry it, so it cannot be the server's key.
        found.append("The API key can only contain printable ASCII characters.")
    if not details.landmark.name:
        found.append("Enter the landmark's name.")
    if not details.landmark.landmark_id:
        found.append("Enter a landmark id.")
    elif not LANDMARK_ID.fullmatch(details.landmark.landmark_id):
        found.append(
            f"“{details.landmark.landmark_id}” cannot be a landmark id: use letters, digits, '_', '-' and "
            f"'.', start with a letter or digit, at most {LANDMARK_ID_MAX_LENGTH} characters."
        )
    if (details.landmark.lat is None) != (details.landmark.lon is None):
        found.append("Give both the latitude and the longitude, or neither.")
    if not details.photos:
        found.append("Choose at least one photo: a landmark without photos cannot be recognised.")
    return found


def upload(client: LandmarksClient, key: str, report: Report, photos: list[Photo]) -> None:
    """Send the photos with a progress bar, keep the outcome and rerun to show it."""
    bar = st.progress(0.0, text=f"Adding {plural(len(photos), 'photo')}…")
    try:
        for answer in client.add_photos_in_batches(key, report.landmark_id, photos):
            report.added += len(answer.added)
            report.rejected += answer.rejected
            done = report.added + len(report.rejected)
            bar.progress(done / len(photos), text=f"Sent {done} of {len(photos)} photos…")
    except ApiError as exc:
        report.error = admin_error_message(exc, client.base_url)
    st.session_state[REPORT] = report
    st.session_state.pop(OFFER, None)
    if report.added and report.error is None:
        st.session_state[ROUND] = st.session_state.get(ROUND, 0) + 1
    st.rerun()


def submit(client: LandmarksClient, key: str, details: Details) -> None:
    found = problems(key, details)
    if found:
        st.error("\n".join(f"- {problem}" for problem in found), icon=":material/edit:")
        return
    try:
        with st.spinner("Creating the landmark…"):
            created = client.create_landmark(key, details.landmark)
    except ApiError as exc:
        if isinstance(exc, ApiClientError) and exc.status == 409:
            # Adding photos to someone else's landmark by a typo would be hard to undo: ask first.
            st.session_state[OFFER] = details.landmark.landmark_id
            return
        st.error(admin_error_message(exc, client.base_url), icon=":material/error:")
        return
    report = Report(created.landmark_id, created.name, created=True, photos=len(details.photos))
    upload(client, key, report, details.photos)


def existing_offer(client: LandmarksClient, key: str, details: Details) -> None:
    """After a 409: say which landmark has the id, and add the photos to it on request."""
    if not (key and details.photos):
        # Cleared since the offer was made: there is nothing to add, or no key to add it with.
        return
    try:
        existing = client.landmark(details.landmark.landmark_id)
    except ApiError as exc:
        st.error(admin_error_message(exc, client.base_url), icon=":material/error:")
        return
    known = [existing.place, plural(existing.image_count or 0, "photo")]
    with st.container(border=True, key="existing-offer"):
        st.warning(
            f"The gallery already has a landmark with the id `{existing.landmark_id}`: "
            f"**{existing.name}** ({', '.join(part for part in known if part)}). Nothing was "
            "changed. Add your photos to it (its name and place stay as they are), or change the "
            "id above to create a new landmark.",
            icon=":material/info:",
        )
        count = plural(len(details.photos), "photo")
        clicked = st.button(
            f"Add the {count} to {existing.name}",
            key="add-to-existing",
            icon=":material/add_photo_alternate:",
        )
    if clicked:
        report = Report(existing.landmark_id, existing.name, created=False, photos=len(details.photos))
        upload(client, key, report, details.photos)


def show_report(report: Report) -> None:
    what = f"**{report.name}** (`{report.landmark_id}`)"
    if report.added:
        done = "is now in the gallery" if report.created else "has new photos"
        count = (
            plural(report.added, "photo")
            if report.added == report.photos
            else f"{report.added} of {report.photos} photos"
        )
        st.success(f"{what} {done}: {count} added.", icon=":material/check_circle:")
    elif report.error is None:
        # Every photo was refused (the reasons follow).
        advice = " Choose other photos and submit again with the same id to add them to it."
        st.error(
            f"{what} was created, but none of its photos could be used.{advice}"
            if report.created
            else f"None of the photos could be used for {what}.",
            icon=":material/error:",
        )
    if report.rejected:
        reasons = "\n".join(f"- `{photo.filename}`: {photo.detail}" for photo in report.rejected)
        st.warning(
            f"{plural(len(report.rejected), 'photo')} not added:\n{reasons}",
            icon=":material/broken_image:",
        )
    if report.error:
        done = report.added + len(report.rejected)
        created = f"{what} was created. " if report.created else ""
        st.error(
            f"{created}The upload stopped after {done} of {report.photos} photos: {report.error}",
            icon=":material/error:",
        )
    if report.added:
        st.markdown("Searches find it from now on: try another photo of it on the Search page.")
        st.page_link("views/search.py", label="Search with a photo", icon=":material/image_search:")
        st.page_link(
            "views/gallery.py",
            label=f"See it in the Gallery (search for “{report.name}”)",
            icon=":material/photo_library:",
        )


def render(client: LandmarksClient) -> None:
    st.title("Add a landmark", anchor=False)
    st.caption(
        "Adds a landmark and its photos to the gallery; searches recognise it right away. Needs the operator's API key."
    )
    details = details_form()
    # The key and the button share a form: a form sends what its fields show when it is
    # submitted. Alone, a password field keeps a typed key only once it commits (Enter, or focus
    # leaving it), and Tab moves the focus to its own "Show password" button, so the key was lost.
    with st.form("add-key-form", border=False):
        key = api_key_input()
        submitted = st.form_submit_button(
            "Add landmark", type="primary", key="add-submit", icon=":material/add_location_alt:"
        )
    if submitted:
        st.session_state.pop(REPORT, None)
        st.session_state.pop(OFFER, None)
        submit(client, key, details)
    if st.session_state.get(OFFER) == details.landmark.landmark_id:
        existing_offer(client, key, details)
    report = st.session_state.get(REPORT)
    if report is not None:
        show_report(report)


# One client per page run: its connections close when the run ends.
with api_client() as page_client:
    render(page_client)
