"""Per-user settings and past searches in SQLite, so both survive a restart of the bot.

A search is stored so that its buttons work later: "more results" downloads the user's photo again
by its Telegram file_id and asks the API for the next page (near the same place, if it was sent with
one); "show on map" needs only the stored place. A location the user shares is kept with the user and
sent with their photos for SHARED_LOCATION_S: Telegram strips EXIF from photos, so it is the only
position a bot can give the API.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Buttons older than this answer "send the photo again"; it also bounds the table's size.
SEARCH_RETENTION_S = 30 * 24 * 3600
# How long a shared location stands for where the user's photos are taken: a visit, not a day.
SHARED_LOCATION_S = 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY,
    k INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS searches (
    search_id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    page_size INTEGER NOT NULL,
    place_name TEXT,
    place_address TEXT,
    lat REAL,
    lon REAL,
    created_at REAL NOT NULL,
    message_id INTEGER
);
"""
# Columns added after the first release, for databases created before them.
ADDED_COLUMNS = {
    "searches": {"message_id": "INTEGER", "near_lat": "REAL", "near_lon": "REAL"},
    "users": {"near_lat": "REAL", "near_lon": "REAL", "near_at": "REAL"},
}


@dataclass(frozen=True)
class Place:
    name: str
    address: str
    lat: float
    lon: float


@dataclass(frozen=True)
class SearchRecord:
    chat_id: int
    file_id: str
    filename: str
    mime_type: str
    page_size: int
    place: Place | None
    search_id: int | None = None
    message_id: int | None = None  # the user's photo, which every answer replies to
    near: tuple[float, float] | None = None  # the location the user had shared, sent with the photo


class Store:
    """Blocking sqlite3 calls run in a worker thread, one short-lived connection each."""

    def __init__(self, path: Path, default_k: int) -> None:
        self.path = path
        self.default_k = default_k

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=10)
        connection.row_factory = sqlite3.Row
        try:
            with connection:  # commits, or rolls back on an exception
                yield connection
        finally:
            connection.close()

    def _init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    async def init(self) -> None:
        await asyncio.to_thread(self._init)

    def _get_k(self, user_id: int) -> int:
        with self._connect() as db:
            row = db.execute("SELECT k FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return row["k"] if row else self.default_k

    async def get_k(self, user_id: int) -> int:
        return await asyncio.to_thread(self._get_k, user_id)

    def _set_k(self, user_id: int, k: int) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO users (user_id, k) VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE SET k = excluded.k",
                (user_id, k),
            )

    async def set_k(self, user_id: int, k: int) -> None:
        await asyncio.to_thread(self._set_k, user_id, k)

    def _set_near(self, user_id: int, lat: float, lon: float) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO users (user_id, k, near_lat, near_lon, near_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET near_lat = excluded.near_lat, near_lon = excluded.near_lon,"
                " near_at = excluded.near_at",
                (user_id, self.default_k, lat, lon, time.time()),
            )

    async def set_near(self, user_id: int, lat: float, lon: float) -> None:
        """Keep the location the user shared, for their next photos."""
        await asyncio.to_thread(self._set_near, user_id, lat, lon)

    def _get_near(self, user_id: int) -> tuple[float, float] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT near_lat, near_lon FROM users WHERE user_id = ? AND near_at >= ?",
                (user_id, time.time() - SHARED_LOCATION_S),
            ).fetchone()
        return (row["near_lat"], row["near_lon"]) if row and row["near_lat"] is not None else None

    async def get_near(self, user_id: int) -> tuple[float, float] | None:
        """The location the user shared within SHARED_LOCATION_S, or None."""
        return await asyncio.to_thread(self._get_near, user_id)

    def _add_search(self, record: SearchRecord) -> int:
        now = time.time()
        place = record.place
        with self._connect() as db:
            db.execute("DELETE FROM searches WHERE created_at < ?", (now - SEARCH_RETENTION_S,))
            cursor = db.execute(
                "INSERT INTO searches (chat_id, file_id, filename, mime_type, page_size, place_name,"
                " place_address, lat, lon, created_at, message_id, near_lat, near_lon)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.chat_id,
                    record.file_id,
                    record.filename,
                    record.mime_type,
                    record.page_size,
                    place and place.name,
                    place and place.address,
                    place and place.lat,
                    place and place.lon,
                    now,
                    record.message_id,
                    record.near and record.near[0],
                    record.near and record.near[1],
                ),
            )
            return cursor.lastrowid

    async def add_search(self, record: SearchRecord) -> int:
        return await asyncio.to_thread(self._add_search, record)

    def _get_search(self, search_id: int) -> SearchRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM searches WHERE search_id = ? AND created_at >= ?",
                (search_id, time.time() - SEARCH_RETENTION_S),
            ).fetchone()
        if row is None:
            return None
        place = None
        if row["place_name"] is not None:
            place = Place(row["place_name"], row["place_address"], row["lat"], row["lon"])
        return SearchRecord(
            chat_id=row["chat_id"],
            file_id=row["file_id"],
            filename=row["filename"],
            mime_type=row["mime_type"],
            page_size=row["page_size"],
            place=place,
            search_id=row["search_id"],
            message_id=row["message_id"],
            near=(row["near_lat"], row["near_lon"]) if row["near_lat"] is not None else None,
        )

    async def get_search(self, search_id: int) -> SearchRecord | None:
        return await asyncio.to_thread(self._get_search, search_id)
