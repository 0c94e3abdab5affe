"""XMP sidecars (`landmarks tag --xmp`): what photo managers read, added to and never lost."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from cli.xmp import LandmarkTag, read_keywords, sidecar_path, write_sidecar, xmp_coordinate

TAJ = LandmarkTag("Taj Mahal", "Agra", "India", (27.1751, 78.0421))
NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
}
# A sidecar as a photo manager leaves it: a keyword, a title and a position of its own.
MANAGERS_SIDECAR = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="27,10.0N" exif:GPSLongitude="78,2.0E">
   <dc:subject><rdf:Bag><rdf:li>Holiday 2024</rdf:li></rdf:Bag></dc:subject>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Sunrise</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def described(path) -> dict[str, str]:
    """The sidecar's simple properties as a generic XML reader sees them (attributes or elements)."""
    found = {}
    for description in ElementTree.parse(path).getroot().iter(f"{{{NS['rdf']}}}Description"):
        for key, value in description.attrib.items():
            found[key] = value
        for child in description:
            if child.text and child.text.strip():
                found[child.tag] = child.text.strip()
    return found


def test_a_new_sidecar_names_the_landmark_its_place_and_its_position(tmp_path):
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"the photo itself is never opened")
    path = write_sidecar(photo, TAJ, photo_has_gps=False)
    assert path == tmp_path / "IMG_0001.jpg.xmp" and photo.read_bytes() == b"the photo itself is never opened"
    assert read_keywords(path) == ["Taj Mahal"]
    fields = described(path)
    assert fields[f"{{{NS['photoshop']}}}City"] == "Agra" and fields[f"{{{NS['photoshop']}}}Country"] == "India"
    latitude = fields[f"{{{NS['exif']}}}GPSLatitude"]
    assert latitude.startswith("27,10.506") and latitude.endswith("N")
    assert fields[f"{{{NS['exif']}}}GPSLongitude"].startswith("78,2.526")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_photo_with_its_own_gps_gets_no_landmark_position(tmp_path):
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(b"x")
    fields = described(write_sidecar(photo, TAJ, photo_has_gps=True))
    assert not any(key.endswith("GPSLatitude") for key in fields)


def test_an_existing_sidecar_is_added_to_and_a_second_run_adds_nothing(tmp_path):
    photo = tmp_path / "IMG_0002.jpg"
    photo.write_bytes(b"x")
    sidecar_path(photo).write_text(MANAGERS_SIDECAR)
    write_sidecar(photo, TAJ, photo_has_gps=False)
    write_sidecar(photo, TAJ, photo_has_gps=False)  # a resumed run redoes its last batch
    path = sidecar_path(photo)
    assert read_keywords(path) == ["Holiday 2024", "Taj Mahal"]
    text = path.read_text()
    assert "Sunrise" in text  # the manager's title kept
    assert "27,10.0" in text and "10.506" not in text  # its position kept, not the landmark's


def test_a_damaged_sidecar_is_an_error_and_stays_as_it_was(tmp_path):
    photo = tmp_path / "IMG_0003.jpg"
    photo.write_bytes(b"x")
    sidecar_path(photo).write_text("<rdf:RDF half written")
    with pytest.raises(OSError, match="IMG_0003.jpg.xmp"):
        write_sidecar(photo, TAJ, photo_has_gps=False)
    assert sidecar_path(photo).read_text() == "<rdf:RDF half written"
    assert not list(tmp_path.glob("*.tmp"))


def test_the_sidecar_of_a_linked_photo_sits_beside_the_link(tmp_path):
    target = tmp_path / "originals" / "a.jpg"
    target.parent.mkdir()
    target.write_bytes(b"x")
    link = tmp_path / "library" / "taj.jpg"
    link.parent.mkdir()
    link.symlink_to(target)
    assert write_sidecar(link, TAJ, photo_has_gps=False) == tmp_path / "library" / "taj.jpg.xmp"
    assert not (target.parent / "a.jpg.xmp").exists()


@pytest.mark.parametrize(
    ("degrees", "expected"),
    [(27.1751, "27,10.506000N"), (-33.8568, "33,51.408000S"), (0.0, "0,0.000000N")],
)
def test_coordinates_in_xmp_form(degrees, expected):
    assert xmp_coordinate(degrees, "N", "S") == expected
