"""Resumable, verified HTTP downloads.

A file downloads into NAME.part; an interrupted download (a dropped connection, a killed process)
continues from the bytes already there with an HTTP Range request, and only a file whose MD5
matches the published sum is renamed to NAME.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "landmark-search/0.1 (+dataset download)"


class DownloadError(RuntimeError):
    """A file could not be downloaded, or its content does not match the published checksum."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_md5_file(text: str) -> str:
    """The checksum in an md5sum-style file ("<32 hex digits>  images_000.tar")."""
    match = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if not match:
        raise DownloadError(f"no MD5 checksum found in {text[:80]!r}")
    return match.group(0).lower()


def download(
    url: str,
    dest: Path,
    *,
    expected_md5: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download URL to DEST (resuming DEST.part), verify it against EXPECTED_MD5, return DEST."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if expected_md5 is None or _verified_before(dest, expected_md5) or md5_of(dest) == expected_md5:
            return dest
        log.warning("%s does not match its checksum; downloading it again", dest)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch_into(url, part, timeout=timeout, progress=progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if attempt == retries:
                raise DownloadError(f"{url}: gave up after {retries} attempts ({exc}); run again to resume") from exc
            log.warning("%s interrupted (%s); resuming, attempt %d of %d", url, exc, attempt + 1, retries)
            time.sleep(min(2**attempt, 30) * 0.1)
    if expected_md5 is not None:
        actual = md5_of(part)
        if actual != expected_md5:
            part.unlink()
            raise DownloadError(f"{url}: MD5 {actual} does not match the published {expected_md5}; the partial file was removed, run again")
    os.replace(part, dest)
    if expected_md5 is not None:
        _marker(dest).write_text(f"{expected_md5} {dest.stat().st_size}\n", encoding="utf-8")
    return dest


def _marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def _verified_before(dest: Path, expected_md5: str) -> bool:
    """A re-run skips re-hashing a file (a GLDv2 shard is 1 GB) that was verified and has not changed size."""
    marker = _marker(dest)
    return marker.is_file() and marker.read_text(encoding="utf-8").split() == [expected_md5, str(dest.stat().st_size)]


def _fetch_into(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The server has nothing past our bytes: either the part is complete or it is longer
            # than the file (a changed file); the checksum decides, so start over only if too long.
            total = _total_from_content_range(exc.headers.get("Content-Range", ""))
            if total is not None and total == offset:
                return
            part.unlink()
            raise ConnectionError("the partial file does not fit the server's file; restarting") from exc
        raise
    with response:
        if offset and response.status != 206:
            log.info("%s: the server ignored the range request; downloading from the start", url)
            offset = 0
        elif offset:
            start = _start_from_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(f"{url}: asked for bytes from {offset}, the server sent from {start}")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with part.open("ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name.removesuffix(".part"), disable=not progress, dynamic_ncols=True, leave=False
        ) as bar:
            received = 0
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < int(length):
            raise http.client.IncompleteRead(b"", int(length) - received)


def _start_from_content_range(value: str) -> int | None:
    match = re.match(r"bytes (\d+)-", value)
    return int(match.group(1)) if match else None


def _total_from_content_range(value: str) -> int | None:
    match = re.search(r"/(\d+)$", value)
    return int(match.group(1)) if match else None
