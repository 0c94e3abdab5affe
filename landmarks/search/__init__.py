"""Search: embed a photo, find its nearest gallery photos, rank landmarks, decide if it is one.

The stages, each switched by `SearchConfig` (and so by LANDMARKS_* variables in the service):

1. embedding, optionally multi-scale (`scales`), of the query and, through a cache in the index
   folder, of the gallery;
2. nearest gallery photos by cosine similarity, optionally over DBA-augmented gallery vectors
   (`dba_k`) and with alpha query expansion (`qe_k`);
3. spatial verification of the top `spatial_top` photos with local features and RANSAC (`spatial`):
   verified photos gain score in proportion to their inliers;
4. landmark aggregation (`aggregate_top`): a landmark's score is the mean of its best photo scores;
5. confidence: the calibrated probability that the top landmark is right (INDEX_DIR/calibration.json,
   from `landmarks calibrate`), else a fixed mapping of the score; `landmark` is null below the
   operating `threshold`;
6. matches: the photos of the ranked landmarks, best landmark first (`group_matches`), as in
   "discriminative re-ranking" with the gallery's labels; else by photo score alone.

The parts: `config` (SearchConfig), `ranking` (landmark aggregation, uncalibrated confidence),
`gallery_cache` (the in-memory gallery and its multi-scale vectors on disk), `searcher` (Searcher:
`embed` photos into `Query` objects, `search` them).
"""

from landmarks.search.config import DEFAULT_THRESHOLD, SearchConfig
from landmarks.search.gallery_cache import MULTISCALE_FILE, GalleryCache
from landmarks.search.ranking import (
    DEFAULT_AGGREGATE_TOP,
    UNCALIBRATED_SCORE_AT_HALF,
    LandmarkScore,
    confidence_from_score,
    rank_landmarks,
)
from landmarks.search.searcher import Query, Searcher, SearchResult

__all__ = [
    "DEFAULT_AGGREGATE_TOP",
    "DEFAULT_THRESHOLD",
    "MULTISCALE_FILE",
    "UNCALIBRATED_SCORE_AT_HALF",
    "GalleryCache",
    "LandmarkScore",
    "Query",
    "SearchConfig",
    "SearchResult",
    "Searcher",
    "confidence_from_score",
    "rank_landmarks",
]
