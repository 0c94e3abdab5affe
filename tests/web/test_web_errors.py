"""The sentences the pages show for each error of the client package (which status or failure
becomes which error is tested against real sockets in tests/client)."""

from __future__ import annotations

import pytest

from client import ApiClientError, ApiRejected, ApiServerError, ApiTimeout, ApiUnavailable
from web.components import admin_error_message, api_error_message

URL = "http://api.internal:8000"


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        (ApiUnavailable("refused"), "The search service is not answering; try again in a minute."),
        (ApiTimeout("slow"), "took too long to answer"),
        (ApiRejected(400, "Cannot identify image (812 bytes not processed)."), "could not be read as a photo."),
        (ApiRejected(413, "Over 15 MB."), "This photo is too large."),
        (ApiRejected(415, "Not an image."), "This file is not an image. Please send a JPEG, PNG or WebP photo."),
        (ApiClientError(429, "Too many requests.", 7), "Please wait 7 seconds and try again."),
        (ApiClientError(429, "Too many requests."), "Please wait a few seconds and try again."),
        (ApiClientError(404, "No route."), "The search service refused the request."),
        (ApiServerError(503, "Loading."), "still loading its model and gallery"),
        (ApiServerError(500, "Scripted failure 500."), "The search service ran into a problem."),
    ],
)
def test_search_errors_read_as_sentences(error, sentence, caplog) -> None:
    message = api_error_message(error, URL)
    assert sentence in message
    # The page's own words only: the internal address and the API's raw detail go to the log.
    assert URL not in message and getattr(error, "detail", "refused") not in message
    assert URL in caplog.text


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        (ApiClientError(401, "Needs a key."), "This needs the operator's API key"),
        (ApiClientError(403, "Not valid."), "the API key is wrong"),
        (ApiClientError(404, "No such landmark."), "not in the gallery (any more). (No such landmark.)"),
        (ApiRejected(422, "Bad field."), "did not accept these details. (Bad field.)"),
        (ApiClientError(409, "Taken."), "The server refused the change. (Taken.)"),
        (ApiUnavailable("refused"), "not answering"),
    ],
)
def test_gallery_change_errors_read_as_sentences(error, sentence) -> None:
    assert sentence in admin_error_message(error, URL)
