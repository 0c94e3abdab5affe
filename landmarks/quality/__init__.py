"""Quality stages around the embedding search: multi-scale descriptors, spatial verification with
local features, query expansion and database-side augmentation, and calibrated confidence.

`landmarks.search.Searcher` composes them; `SearchConfig` switches each one on or off.
"""
