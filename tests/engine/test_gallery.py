"""Gallery layouts on disk: folder per landmark with landmarks.csv, and Google Landmarks v2."""

from __future__ import annotations

import csv
import os

from landmarks.gallery import category_name, scan_gallery
from tests.support import dev_protocol


def test_folder_layout_reads_metadata_and_keeps_extra_columns(tmp_path):
    protocol = dev_protocol()
    photos = [
        item
        for lid in ("taj_mahal", "charminar")
        for item in [(p, label) for p, label in protocol.gallery if label == lid][:3]
    ]
    for path, landmark_id in photos:
        (tmp_path / landmark_id).mkdir(exist_ok=True)
        os.symlink(path, tmp_path / landmark_id / path.name)
    (tmp_path / "no_metadata_place").mkdir()
    os.symlink(photos[0][0], tmp_path / "no_metadata_place" / "x.jpg")
    (tmp_path / "no_metadata_place" / "notes.txt").write_text("not a photo")
    (tmp_path / "landmarks.csv").write_text(
        "landmark_id,name,city,country,lat,lon,wiki\n"
        "taj_mahal,Taj Mahal,Agra,India,27.1751,78.0421,https://en.wikipedia.org/wiki/Taj_Mahal\n"
        "charminar,Charminar,Hyderabad,India,,,\n"
    )
    gallery = scan_gallery(tmp_path)
    assert gallery.layout == "folders"
    assert len(gallery.images) == len(photos) + 1
    taj = gallery.landmarks["taj_mahal"]
    assert (taj.name, taj.city, taj.lat) == ("Taj Mahal", "Agra", 27.1751)
    assert taj.extra == {"wiki": "https://en.wikipedia.org/wiki/Taj_Mahal"}
    assert gallery.landmarks["charminar"].lat is None
    assert gallery.landmarks["no_metadata_place"].name == "No Metadata Place"


def test_category_urls_become_names():
    url = "http://commons.wikimedia.org/wiki/Category:Ch%C3%A2teau_de_Chambord%2C_Loir-et-Cher"
    assert category_name(url) == "Château de Chambord, Loir-et-Cher"


def make_gldv2(root, photos):
    """A GLDv2-shaped folder: train.csv, a/b/c/<id>.jpg, train_label_to_category.csv."""
    rows = []
    for number, (path, landmark_id) in enumerate(photos):
        image_id = f"{number:04x}" + "abcdef0123456789"[number % 16] * 12
        target = root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
        rows.append((image_id, landmark_id))
    rows.append(("ffffffffffffffff", "1"))  # listed but not downloaded: left out, not fatal
    numeric = {lid: str(i + 1) for i, lid in enumerate(sorted({lid for _, lid in photos}))}
    with (root / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "url", "landmark_id"])
        for image_id, landmark_id in rows:
            writer.writerow([image_id, "http://example.invalid", numeric.get(landmark_id, landmark_id)])
    with (root / "train_label_to_category.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["landmark_id", "category"])
        for landmark_id, number in numeric.items():
            writer.writerow([number, f"http://commons.wikimedia.org/wiki/Category:{landmark_id.title()}%2C_India"])
    return numeric


def test_gldv2_layout(tmp_path):
    protocol = dev_protocol()
    photos = [
        item
        for lid in ("taj_mahal", "charminar")
        for item in [(p, label) for p, label in protocol.gallery if label == lid][:4]
    ]
    numeric = make_gldv2(tmp_path, photos)
    gallery = scan_gallery(tmp_path)
    assert gallery.layout == "gldv2"
    assert len(gallery.images) == len(photos)
    assert {image.landmark_id for image in gallery.images} == set(numeric.values())
    assert gallery.landmarks[numeric["taj_mahal"]].name == "Taj_Mahal, India".replace("_", " ")
    assert all(image.path.is_file() for image in gallery.images)
