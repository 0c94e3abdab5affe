"""The client's copy of the contract against the contract itself: the live API's /openapi.json
(and, for the photo limit the schema does not state yet, the live API's answer)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import httpx
import pytest

from client import ApiRejected, LandmarksClient, calls, contract
from client.contract import Landmark, Photo, SearchRequest
from tests.client.conftest import API_KEY
from tests.support import dev_protocol


@pytest.fixture(scope="module")
def openapi(api_server) -> dict[str, Any]:
    answer = httpx.get(f"{api_server.url}/openapi.json", timeout=30)
    answer.raise_for_status()
    return answer.json()


def schema(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    return openapi["components"]["schemas"][name]


def resolved(openapi: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema(openapi, ref.rsplit("/", 1)[1]) if ref else node


def non_null(node: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field (`anyOf: [{...}, {"type": "null"}]`)."""
    return next((branch for branch in node.get("anyOf", []) if branch.get("type") != "null"), node)


def operation(openapi: dict[str, Any], call: calls.Call) -> dict[str, Any]:
    """The operation of the OpenAPI path template that the call's URL fills in."""
    path = httpx.URL(call.url).path
    for template, methods in openapi["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and call.method.lower() in methods:
            return methods[call.method.lower()]
    raise AssertionError(f"{call.method} {path} is not in the API's schema")


def query_parameters(openapi: dict[str, Any], call: calls.Call) -> dict[str, dict[str, Any]]:
    parameters = operation(openapi, call).get("parameters", [])
    return {p["name"]: non_null(p["schema"]) for p in parameters if p["in"] == "query"}


def multipart_fields(openapi: dict[str, Any], call: calls.Call) -> dict[str, Any]:
    body = operation(openapi, call)["requestBody"]["content"]["multipart/form-data"]["schema"]
    return resolved(openapi, body)["properties"]


def field_names(dto: type) -> set[str]:
    return {f.name for f in dataclasses.fields(dto)}


def test_k_bounds(openapi) -> None:
    k = query_parameters(openapi, calls.search(SearchRequest(Photo("q.jpg", b"", "image/jpeg"), k=1)))["k"]
    assert (k["minimum"], k["maximum"]) == (contract.MIN_K, contract.MAX_K)


def test_gallery_photo_size_bounds(openapi) -> None:
    call = calls.image("http://api/gallery/1", contract.MIN_IMAGE_SIZE)
    size = query_parameters(openapi, call)["size"]
    assert (size["minimum"], size["maximum"]) == (contract.MIN_IMAGE_SIZE, contract.MAX_IMAGE_SIZE)
    assert set(httpx.URL(call.url).params) <= set(query_parameters(openapi, call))


def test_landmark_fields(openapi) -> None:
    fields = schema(openapi, "LandmarkCreate")["properties"]
    pattern = fields["landmark_id"]["pattern"]
    assert pattern == contract.LANDMARK_ID_PATTERN
    # The length the page allows is the longest id the pattern accepts.
    assert re.fullmatch(pattern, "a" * contract.LANDMARK_ID_MAX_LENGTH)
    assert not re.fullmatch(pattern, "a" * (contract.LANDMARK_ID_MAX_LENGTH + 1))
    for name in ("name", "city", "country"):
        assert non_null(fields[name])["maxLength"] == contract.LANDMARK_TEXT_MAX_LENGTH, name
    call = calls.create_landmark(
        API_KEY, Landmark("x", "X", city="c", country="d", lat=1.0, lon=2.0, image_count=3, score=0.5)
    )
    # The place fields travel; search and gallery fields (image_count, score) do not.
    assert set(call.json) == {"landmark_id", "name", "city", "country", "lat", "lon"} and set(call.json) <= set(fields)


def test_photos_per_request(openapi, write_api) -> None:
    call = calls.add_photos(API_KEY, "taj_mahal", [])
    (images,) = multipart_fields(openapi, call).values()
    assert images["type"] == "array"
    # The schema states no maxItems today (see the report to api/); once it does, it must agree.
    assert images.get("maxItems", contract.MAX_PHOTOS_PER_REQUEST) == contract.MAX_PHOTOS_PER_REQUEST
    path, _ = dev_protocol().gallery[0]
    photo = Photo(path.name, path.read_bytes(), "image/jpeg")
    with LandmarksClient(write_api.url) as api, pytest.raises(ApiRejected) as over:
        api.add_photos(API_KEY, "taj_mahal", [photo] * (contract.MAX_PHOTOS_PER_REQUEST + 1))
    assert over.value.status == 413
    assert over.value.detail == f"At most {contract.MAX_PHOTOS_PER_REQUEST} photos per request."


def test_request_field_names(openapi) -> None:
    search = calls.search(SearchRequest(Photo("q.jpg", b"", "image/jpeg"), k=1, near=(27.17, 78.04), box=True))
    assert set(search.params) <= set(query_parameters(openapi, search))
    assert set(search.files) <= set(multipart_fields(openapi, search))
    add = calls.add_photos(API_KEY, "taj_mahal", [Photo("a.jpg", b"")])
    assert {name for name, _ in add.files} <= set(multipart_fields(openapi, add))
    listing = calls.landmarks("taj")
    assert set(listing.params) <= set(query_parameters(openapi, listing))
    (scheme,) = openapi["components"]["securitySchemes"].values()
    assert (scheme["in"], scheme["name"]) == ("header", contract.API_KEY_HEADER)
    for call in (
        calls.landmark("taj_mahal"),
        calls.health(),
        calls.delete_landmark(API_KEY, "taj_mahal"),
        calls.delete_photo(API_KEY, 1),
    ):
        operation(openapi, call)  # every call the clients make is an operation of the API


@pytest.mark.parametrize(
    ("dto", "schemas"),
    [
        (contract.BestGuess, ["BestLandmark"]),
        # Search hits carry a score, listing entries a sample photo; both are read as a Landmark.
        (contract.Landmark, ["LandmarkHit", "LandmarkSummary", "LandmarkDetail"]),
        (contract.ExcludedImage, ["ExcludedPhoto"]),
        (contract.Match, ["Match"]),
        (contract.SearchResult, ["SearchResponse"]),
        (contract.LandmarkList, ["LandmarkList"]),
        (contract.Health, ["Health"]),
        (contract.GalleryImage, ["GalleryImageRef"]),
        (contract.RejectedPhoto, ["RejectedPhoto"]),
        (contract.AddedPhotos, ["AddedPhotos"]),
        (contract.Deleted, ["Deleted"]),
    ],
)
def test_answer_field_names(openapi, dto, schemas) -> None:
    known = set().union(*(schema(openapi, name)["properties"] for name in schemas))
    fields = field_names(dto)
    if dto is contract.Landmark:
        # `translations` gathers the name_ru-style extra metadata, which the schemas let through.
        assert all(schema(openapi, name).get("additionalProperties") is True for name in schemas)
        fields -= {"translations"}
    if dto is contract.SearchResult:
        # photo_location's (lat, lon) and its source, read flat.
        assert {"lat", "lon", "source"} <= set(schema(openapi, "PhotoLocation")["properties"])
        fields -= {"photo_location_source"}
    assert fields <= known, fields - known
