"""Gallery cleaning: find the gallery photos that do not show their landmark, as GLDv2's clean subset did.

Google Landmarks v2 is full of photos filed under a landmark that show no landmark (a rooftop café's
table, a selfie, a ticket) or show a different one; the seed shipped a filtered clean gallery for that
reason. Such a photo harms search twice: a query of an office matches its furniture and is named the
landmark, and it pulls look-alike queries of other landmarks. Cleaning looks at the gallery alone
(never at queries), each photo left out of its own evidence:

- other_landmark: its nearest photos of another landmark are clearly closer to it than its own
  landmark's closest photos;
- no_landmark: the landmark prior (landmarks.quality.prior) says it does not look like a landmark,
  and it is hardly closer to its own landmark's landmark-looking photos than to another's: what it
  shares with its landmark is what it shares with every landmark (people, tables, streets).

Suspects are reported (`landmarks index clean` writes a CSV and a contact sheet) and excluded from
matching by a review in the store, which a person can undo; no photo is ever deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from landmarks.index import GalleryIndex
from landmarks.index.store import Review

# The search's landmark aggregation (landmarks.search.ranking.DEFAULT_AGGREGATE_TOP), spelled out so
# that `landmarks index clean` starts without importing the models (tests/quality/test_cleaning.py
# keeps the two equal).
AGGREGATE_TOP = 2
REASONS = ("no_landmark", "other_landmark")


@dataclass(frozen=True)
class CleaningParams:
    """What makes a gallery photo a suspect. Measured by bench/cleaning.py on the dev gallery: the
    contact sheet of its suspects, and R@1 and refusals before and after."""

    neighbours: int = 50  # nearest gallery photos each photo's rival landmarks are found among
    aggregate_top: int = AGGREGATE_TOP  # a landmark's score: the mean of its best photos (as search)
    rival_margin: float = 0.05  # other_landmark: a rival landmark beats its own by more than this
    prior_below: float = 0.4  # no_landmark: a landmark prior below this...
    distinct_below: float = 0.015  # ...and its own landmark ahead of the best rival by less than this
    support_share: float = 0.5  # a landmark with fewer landmark-looking photos is weighed by all of them
    min_photos: int = 5  # landmarks with fewer photos say too little about what they look like


@dataclass(frozen=True)
class PhotoEvidence:
    image_id: int
    landmark_id: str
    own: float  # its own landmark's score: the mean of its closest own (landmark-looking) photos, itself left out
    rival: str | None  # the closest other landmark among its nearest (landmark-looking) photos
    rival_score: float
    prior: float | None

    @property
    def distinctness(self) -> float:
        """How much closer it is to its own landmark than to the best rival (negative: farther)."""
        return self.own - self.rival_score


@dataclass(frozen=True)
class Suspect:
    evidence: PhotoEvidence
    reason: str  # one of REASONS
    detail: str  # a sentence a person reads

    @property
    def image_id(self) -> int:
        return self.evidence.image_id


def gather_evidence(
    ids: np.ndarray,
    vectors: np.ndarray,
    labels: Sequence[str],
    priors: dict[int, float],
    params: CleaningParams | None = None,
    *,
    block: int = 512,
) -> list[PhotoEvidence]:
    """The evidence on every gallery photo: (N,) ids, (N, D) unit vectors, their landmarks and priors.

    A photo is weighed against the landmark-looking photos of each landmark (prior at least
    `prior_below`), so that a cluster of café photos filed under one landmark cannot vouch for each
    other; a landmark whose photos mostly do not look like landmarks to ImageNet (carvings, cave
    interiors: fewer than `support_share` of them) is represented by all its photos. Exact
    similarities in blocks of BLOCK rows (N x N never held at once)."""
    params = params or CleaningParams()
    n = len(ids)
    if n < 2:
        return []
    labels = np.asarray(labels)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    prior_of = np.array([priors.get(int(i), np.nan) for i in ids])
    support = ~(prior_of < params.prior_below)  # unknown priors support too
    for landmark in np.unique(labels):
        mine = labels == landmark
        if support[mine].mean() < params.support_share:
            support[mine] = True
    m = max(1, params.aggregate_top)
    k = min(params.neighbours, n - 1)
    evidence = []
    for start in range(0, n, block):
        sims = vectors[start : start + block] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # itself left out
        for row in rows:
            i = start + row
            mine = labels == labels[i]
            own = sims[row, mine & support]
            own = own[np.isfinite(own)]
            if not len(own):  # its landmark's only landmark-looking photo is itself
                own = sims[row, mine]
                own = own[np.isfinite(own)]
            own_score = _aggregate(np.sort(own)[::-1][:m], m) if len(own) else 0.0
            others = np.where(support & ~mine)[0]
            if len(others) > k:
                others = others[np.argpartition(-sims[row, others], k - 1)[:k]]
            others = others[np.argsort(-sims[row, others], kind="stable")]
            rivals = _landmark_scores(labels[others], sims[row, others], m)
            rival = max(rivals, key=rivals.get) if rivals else None
            evidence.append(
                PhotoEvidence(
                    int(ids[i]), str(labels[i]), own_score, rival, rivals.get(rival, 0.0), priors.get(int(ids[i]))
                )
            )
    return evidence


def _aggregate(best: np.ndarray | list[float], m: int) -> float:
    """ranking.rank_landmarks' rule: the mean of the best M, the last repeated when there are fewer."""
    best = list(best)
    return float(np.mean(best + [best[-1]] * (m - len(best))))


def _landmark_scores(labels: np.ndarray, sims: np.ndarray, m: int) -> dict[str, float]:
    """Each landmark's score among candidates sorted best first."""
    best: dict[str, list[float]] = {}
    for label, sim in zip(labels.tolist(), sims.tolist(), strict=True):
        scores = best.setdefault(label, [])
        if len(scores) < m:
            scores.append(sim)
    return {label: _aggregate(scores, m) for label, scores in best.items()}


def find_suspects(
    evidence: Sequence[PhotoEvidence], params: CleaningParams | None = None, *, names: dict[str, str] | None = None
) -> list[Suspect]:
    """The photos that do not show their landmark, most certain first. NAMES: landmark id -> name, for
    the sentences."""
    params = params or CleaningParams()
    names = names or {}
    counts: dict[str, int] = {}
    for item in evidence:
        counts[item.landmark_id] = counts.get(item.landmark_id, 0) + 1
    suspects = []
    for item in evidence:
        if counts[item.landmark_id] < params.min_photos or item.rival is None:
            continue
        own_name = names.get(item.landmark_id, item.landmark_id)
        if -item.distinctness > params.rival_margin:
            rival_name = names.get(item.rival, item.rival)
            detail = f"closer to {rival_name} ({item.rival_score:.2f}) than to {own_name} ({item.own:.2f})"
            suspects.append(Suspect(item, "other_landmark", detail))
        elif item.prior is not None and item.prior < params.prior_below and item.distinctness < params.distinct_below:
            detail = (
                f"does not look like a landmark (prior {item.prior:.2f}), and is hardly closer to {own_name} "
                f"({item.own:.2f}) than to {names.get(item.rival, item.rival)} ({item.rival_score:.2f})"
            )
            suspects.append(Suspect(item, "no_landmark", detail))
    return sorted(suspects, key=lambda suspect: (REASONS.index(suspect.reason), suspect.evidence.distinctness))


def contact_sheet(
    photos: Sequence[tuple[Image.Image | None, str]], *, columns: int = 6, cell: int = 200, caption_lines: int = 3
) -> Image.Image:
    """A grid of (photo, caption) a person can look over; an unreadable photo (None) shows as a grey cell."""
    columns = max(1, min(columns, len(photos) or 1))
    rows = max(1, -(-len(photos) // columns))
    line = 12
    height = cell + caption_lines * line + 6
    sheet = Image.new("RGB", (columns * cell, rows * height), "white")
    draw = ImageDraw.Draw(sheet)
    chars = max(8, cell // 6)
    for position, (photo, caption) in enumerate(photos):
        x, y = (position % columns) * cell, (position // columns) * height
        if photo is None:
            draw.rectangle((x + 4, y + 4, x + cell - 4, y + cell - 4), fill="#cccccc")
        else:
            thumb = ImageOps.contain(photo.convert("RGB"), (cell - 8, cell - 8))
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        words, lines, current = caption.split(), [], ""
        for word in words:
            if current and len(current) + 1 + len(word) > chars:
                lines.append(current)
                current = word
            else:
                current = f"{current} {word}".strip()
        lines.append(current)
        for number, text in enumerate(lines[:caption_lines]):
            draw.text((x + 4, y + cell + number * line), text, fill="black")
    return sheet


def review_gallery(index: GalleryIndex, params: CleaningParams | None = None) -> list[Suspect]:
    """The suspects of an index's gallery: every photo weighed, excluded ones too (so that cleaning again
    gives the same answer); photos a person kept, or excluded by hand, are not flagged."""
    ids, vectors, labels = index.store.vectors(index.vectors.dim, matched_only=False)
    evidence = gather_evidence(ids, vectors, labels, index.store.priors(), params)
    by_hand = [
        s for s, review in index.store.reviews().items() if review.verdict == "kept" or review.reason not in REASONS
    ]
    reviewed = set(index.store.image_ids_by_source(by_hand).values())
    names = {landmark_id: landmark.name for landmark_id, landmark in index.landmarks().items()}
    return [suspect for suspect in find_suspects(evidence, params, names=names) if suspect.image_id not in reviewed]


def exclude_suspects(index: GalleryIndex, suspects: Sequence[Suspect]) -> None:
    """Make SUSPECTS the gallery's automatic exclusions: earlier ones that are no longer suspects match
    again; a person's verdicts stay as they are."""
    sources = {record.image_id: record.source for record in index.store.images().values()}
    chosen = {sources[s.image_id]: s for s in suspects if s.image_id in sources}
    # Only what is no longer a suspect comes back; the rest stays out (its review is rewritten).
    lifted = [s for s, review in index.store.reviews().items() if review.reason in REASONS and s not in chosen]
    index.restore(lifted)
    index.review(Review(source, "excluded", s.reason, s.detail) for source, s in chosen.items())
