"""Batch samplers for metric learning: every batch holds M photos of each of C landmarks."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class MPerClassBatchSampler(Sampler[list[int]]):
    """Batches of `classes_per_batch` distinct classes × `samples_per_class` photos of each.

    Ranking losses need positives in every batch: with M photos of each class, every photo has M − 1
    positives and (C − 1)·M negatives. Classes are visited in shuffled rounds, so over an epoch each
    class appears about equally often whatever its size. A class with fewer than M photos repeats
    some (the training transform makes each copy look different).

    Batches are a pure function of (seed, epoch): a run resumed mid-epoch gets the same batches.
    """

    def __init__(
        self,
        labels: Sequence[int],
        classes_per_batch: int,
        samples_per_class: int,
        *,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        labels = np.asarray(labels)
        self.members = {int(label): np.flatnonzero(labels == label) for label in np.unique(labels)}
        if classes_per_batch > len(self.members):
            raise ValueError(
                f"{classes_per_batch} classes per batch, but the data has only {len(self.members)} classes"
            )
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError("classes_per_batch and samples_per_class must be at least 1")
        self.classes_per_batch = classes_per_batch
        self.samples_per_class = samples_per_class
        self.batch_size = classes_per_batch * samples_per_class
        self.batches_per_epoch = batches_per_epoch or max(1, len(labels) // self.batch_size)
        self.seed = seed

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        """The first epoch's batches; the trainer asks for each epoch's with `batches(epoch)`."""
        yield from self.batches(0)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        classes = np.array(sorted(self.members))
        pending: deque[int] = deque()
        batches = []
        for _ in range(self.batches_per_epoch):
            chosen: list[int] = []
            deferred: list[int] = []
            while len(chosen) < self.classes_per_batch:
                if not pending:
                    pending.extend(int(c) for c in rng.permutation(classes))
                label = pending.popleft()
                # A class already in this batch waits for the next one instead of being dropped.
                (deferred if label in chosen else chosen).append(label)
            pending.extendleft(reversed(deferred))
            batch = []
            for label in chosen:
                members = self.members[label]
                picked = rng.choice(members, self.samples_per_class, replace=len(members) < self.samples_per_class)
                batch.extend(int(index) for index in picked)
            batches.append(batch)
        return batches
