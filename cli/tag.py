"""`landmarks tag PHOTO_DIR --out tags.csv`: name the landmark in every photo of a library, resumably."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace
from pathlib import Path

from cli.index import add_model_arguments, load_model, open_existing_index
from cli.xmp import LandmarkTag, require_exiv2, write_sidecar

COLUMNS = (
    "path",
    "landmark_id",
    "name",
    "confidence",
    "refusal",
    "city",
    "country",
    "lat",
    "lon",
    "photo_lat",
    "photo_lon",
    "distance_km",
    "box",
    "error",
)
# Photos embedded in one model call; the output is flushed and fsynced after each batch, so a killed
# run loses at most one batch of work.
BATCH = 8


def register(commands) -> None:
    tag = commands.add_parser(
        "tag",
        help="name the landmark in every photo under a folder (CSV or JSONL), resumable",
        description="Walk PHOTO_DIR recursively and write one row a photo: the landmark (or why none), its "
        "confidence and place. Run it again after an interruption (even kill -9): photos already in the output "
        "are skipped.",
    )
    tag.add_argument("photo_dir", type=Path, metavar="PHOTO_DIR")
    tag.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="the output: .jsonl for JSON lines, anything else CSV; appended to when it exists",
    )
    tag.add_argument(
        "--index", type=Path, default=None, metavar="INDEX_DIR", help="default: LANDMARKS_INDEX_DIR, else data/index"
    )
    tag.add_argument(
        "--xmp",
        action="store_true",
        help="also write an XMP sidecar (PHOTO.EXT.xmp) for each photo with a landmark: its name as a keyword, "
        "its place, and its position when the photo has none; an existing sidecar is added to",
    )
    tag.add_argument(
        "--box",
        action="store_true",
        help="also say where the landmark is in each photo (x0 y0 x1 y1 as fractions of the upright photo, as "
        "POST /search?box=true answers; about 15 times a search's time)",
    )
    tag.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_arguments(tag)
    tag.set_defaults(func=run)


def library_photos(root: Path) -> list[Path]:
    from landmarks.images import IMAGE_SUFFIXES

    return sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def tagged_paths(out: Path, jsonl: bool) -> set[str]:
    """The photos an earlier run finished; a last line cut short by a kill is dropped from the file."""
    if not out.exists():
        return set()
    raw = out.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if len(complete) != len(raw):
        with out.open("r+b") as handle:
            handle.truncate(len(complete))
    text = complete.decode("utf-8")
    if jsonl:
        return {json.loads(line)["path"] for line in text.splitlines() if line.strip()}
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is not None and tuple(reader.fieldnames) != COLUMNS:
        from cli import CommandError

        raise CommandError(
            f"{out} has other columns than this version writes ({', '.join(COLUMNS)}): "
            "give a new --out file (or convert the old one)"
        )
    return {row["path"] for row in reader}


def run(args) -> int:
    from tqdm import tqdm

    from cli import CommandError
    from landmarks.images import ImageError, decode_image, photo_location
    from landmarks.search import Searcher
    from landmarks.search.region import photo_for_crops

    if not args.photo_dir.is_dir():
        raise CommandError(f"no folder at {args.photo_dir}")
    if args.xmp:
        try:
            require_exiv2()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
    index_dir = args.index or args.settings.index_dir
    jsonl = args.out.suffix.lower() == ".jsonl"
    photos = library_photos(args.photo_dir)
    done = tagged_paths(args.out, jsonl)
    todo = [path for path in photos if str(path.relative_to(args.photo_dir)) not in done]
    print(f"{len(photos)} photos under {args.photo_dir}: {len(photos) - len(todo)} already tagged, {len(todo)} to go")
    if not todo:
        return 0
    extractor = load_model(args, index_dir)
    index = open_existing_index(index_dir, extractor)
    if len(index) == 0:
        raise CommandError(f"the index at {index_dir} is empty: build it with `landmarks index build`")
    searcher = Searcher(extractor, index, args.settings.search_config(), prior=args.settings.landmark_prior())
    landmarks = index.landmarks()
    new_file = not args.out.exists() or args.out.stat().st_size == 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc="tagging", unit="photo", disable=args.no_progress, dynamic_ncols=True)
    with args.out.open("a", encoding="utf-8", newline="") as handle:
        writer = None if jsonl else csv.DictWriter(handle, COLUMNS)
        if writer is not None and new_file:
            writer.writeheader()
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            rows, images, locations = {}, {}, {}
            for path in batch:
                try:
                    data = path.read_bytes()
                    images[path] = decode_image(data)
                    locations[path] = photo_location(data)
                except (ImageError, OSError) as exc:
                    rows[path] = {"error": str(exc)}
            if images:
                queries = [
                    replace(query, location=locations[path])
                    for path, query in zip(images, searcher.embed(list(images.values())), strict=True)
                ]
                for path, query, result in zip(images, queries, searcher.search(queries, 1), strict=True):
                    rows[path] = _row(result, landmarks)
                    if args.box and result.landmark is not None:
                        photo = photo_for_crops(images[path], extractor.preprocess.image_size)
                        region = searcher.locate(photo, query, result)
                        if region is not None:
                            rows[path]["box"] = " ".join(f"{v:.4f}" for v in region.box)
                    if args.xmp and result.landmark is not None:
                        _write_sidecar(path, landmarks.get(result.landmark.landmark_id), result, rows[path])
            for path in batch:
                row = {column: "" for column in COLUMNS} | rows[path] | {"path": str(path.relative_to(args.photo_dir))}
                if writer is None:
                    handle.write(json.dumps({k: _json_value(k, v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                else:
                    writer.writerow(row)
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
    bar.close()
    searcher.close()
    index.close()
    print(f"tagged {len(todo)} photos into {args.out}")
    return 0


def _json_value(column: str, value):
    """A CSV cell as a JSON value: empty is null, the box a list of four numbers."""
    if value == "":
        return None
    return [float(v) for v in value.split()] if column == "box" else value


def _write_sidecar(path: Path, landmark, result, row: dict) -> None:
    """The sidecar of a photo with a landmark; a sidecar that cannot be written is the row's error (the
    tag itself stands), not the end of the run."""
    name = landmark.name if landmark is not None else result.landmark.landmark_id
    position = None
    if landmark is not None and landmark.lat is not None and landmark.lon is not None:
        position = (landmark.lat, landmark.lon)
    city, country = (landmark.city, landmark.country) if landmark is not None else (None, None)
    try:
        write_sidecar(path, LandmarkTag(name, city, country, position), photo_has_gps=result.location is not None)
    except (OSError, RuntimeError) as exc:
        row["error"] = f"XMP sidecar not written: {exc}"


def _row(result, landmarks: dict) -> dict:
    from landmarks.search.ranking import distance_km

    taken = {} if result.location is None else {"photo_lat": result.location[0], "photo_lon": result.location[1]}
    if result.landmark is None:
        return {"confidence": round(result.confidence, 4), "refusal": result.refusal or ""} | taken
    landmark = landmarks.get(result.landmark.landmark_id)
    row = {"landmark_id": result.landmark.landmark_id, "confidence": round(result.confidence, 4)} | taken
    if landmark is not None and result.location is not None and landmark.lat is not None and landmark.lon is not None:
        row["distance_km"] = round(distance_km(result.location, (landmark.lat, landmark.lon)), 3)
    if landmark is not None:
        row |= {
            "name": landmark.name,
            "city": landmark.city or "",
            "country": landmark.country or "",
            "lat": "" if landmark.lat is None else landmark.lat,
            "lon": "" if landmark.lon is None else landmark.lon,
        }
    return row
