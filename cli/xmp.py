"""XMP sidecars for `landmarks tag --xmp`: the landmark a photo shows, where photo managers look for it.

Written through exiv2 (the `exiv2` package: Python bindings of libexiv2, which digiKam, darktable and
gThumb use), never by hand. A sidecar is `PHOTO.EXT.xmp` beside the photo (darktable's and digiKam's
name; it stays unambiguous when `a.jpg` and `a.heic` sit together). What it gets:

- the landmark's name as a keyword (`dc:subject`), and its city and country (`photoshop:City`,
  `photoshop:Country`) where the sidecar has none;
- the landmark's position (`exif:GPSLatitude`, `exif:GPSLongitude`) only when neither the photo nor the
  sidecar has one: a photo's own GPS is better than the landmark's.

A sidecar that is already there (a photo manager's) is added to, never replaced, and adding the same
keyword twice keeps one: a resumed run rewrites the sidecars of its last batch without harm. Each write
goes to a temporary file first, renamed over the sidecar, so a kill never leaves half a sidecar.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".xmp"


@dataclass(frozen=True)
class LandmarkTag:
    name: str
    city: str | None = None
    country: str | None = None
    position: tuple[float, float] | None = None  # the landmark's (lat, lon), written when the photo has none


def sidecar_path(photo: Path) -> Path:
    """Beside the photo as it is named in the library (a symbolic link is not followed)."""
    return photo.with_name(photo.name + SUFFIX)


def require_exiv2():
    """The exiv2 module, or a clear error naming the dependency group that brings it."""
    try:
        import exiv2
    except ImportError as exc:
        raise RuntimeError(
            "--xmp needs the exiv2 package: `uv sync --group library` (uv's default groups have it)"
        ) from exc
    return exiv2


def write_sidecar(photo: Path, tag: LandmarkTag, photo_has_gps: bool) -> Path:
    """Adds TAG to the photo's sidecar (made when missing); returns the sidecar's path. OSError when it
    cannot be written (a read-only folder, a damaged sidecar), the sidecar then left as it was."""
    exiv2 = require_exiv2()
    path = sidecar_path(photo)
    temporary = path.with_name(path.name + ".tmp")
    try:
        if path.exists():
            shutil.copyfile(path, temporary)
            image = exiv2.ImageFactory.open(str(temporary))
            image.readMetadata()
        else:
            image = exiv2.ImageFactory.create(exiv2.ImageType.xmp, str(temporary))
        xmp = image.xmpData()
        _add_keyword(exiv2, xmp, tag.name)
        for key, value in (("Xmp.photoshop.City", tag.city), ("Xmp.photoshop.Country", tag.country)):
            if value and not _has(exiv2, xmp, key):
                xmp[key] = value
        if tag.position is not None and not photo_has_gps and not _has(exiv2, xmp, "Xmp.exif.GPSLatitude"):
            lat, lon = tag.position
            xmp["Xmp.exif.GPSVersionID"] = "2.2.0.0"
            xmp["Xmp.exif.GPSMapDatum"] = "WGS-84"
            xmp["Xmp.exif.GPSLatitude"] = xmp_coordinate(lat, "N", "S")
            xmp["Xmp.exif.GPSLongitude"] = xmp_coordinate(lon, "E", "W")
        image.setXmpData(xmp)
        image.writeMetadata()
        os.replace(temporary, path)
    except exiv2.Exiv2Error as exc:
        raise OSError(f"exiv2 could not write {path.name}: {exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return path


def xmp_coordinate(degrees: float, positive: str, negative: str) -> str:
    """XMP's GPS form (the XMP specification, part 2, "GPSCoordinate"): "DDD,MM.mmmmmmK"."""
    whole = int(abs(degrees))
    minutes = (abs(degrees) - whole) * 60
    return f"{whole},{minutes:.6f}{positive if degrees >= 0 else negative}"


def read_keywords(path: Path) -> list[str]:
    """The sidecar's `dc:subject` keywords, in order."""
    exiv2 = require_exiv2()
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    xmp = image.xmpData()
    found = xmp.findKey(exiv2.XmpKey("Xmp.dc.subject"))
    if found == xmp.end():
        return []
    value = found.value()
    return [value.toString(i) for i in range(value.count())]


def _has(exiv2, xmp, key: str) -> bool:
    return xmp.findKey(exiv2.XmpKey(key)) != xmp.end()


def _add_keyword(exiv2, xmp, keyword: str) -> None:
    key = exiv2.XmpKey("Xmp.dc.subject")
    found = xmp.findKey(key)
    keywords = []
    if found != xmp.end():
        value = found.value()
        keywords = [value.toString(i) for i in range(value.count())]
        xmp.erase(found)
    bag = exiv2.XmpArrayValue(exiv2.TypeId.xmpBag)
    for word in [*keywords, *([] if keyword in keywords else [keyword])]:
        bag.read(word)
    xmp.add(key, bag)
