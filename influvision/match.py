"""Open-set matching of face embeddings against the registered people.

A face is named only when the evidence is strong on three counts: it is close to one person
(distance <= threshold), clearly closer to that person than to anybody else (margin), and the face
itself is good enough to trust (size, sharpness: decided upstream and passed in as ``eligible``).
Everything else stays unknown: naming an unregistered person is the most expensive error the product
can make, so doubt resolves to "unknown".

Within one photo (a *group*), a person is assigned to at most one face: the assignment minimises the
total distance over the candidate pairs (Hungarian), it is not an independent argmax per face.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

UNKNOWN = -1


#: Thresholds above this multiple of the embedder's calibrated one are refused: the threshold is a distance (lower
#: is stricter) while reports show similarity (1 - distance), so 0.9 "to be strict" is the likely mistake; at
#: dlib's usual 0.6 (1.2x) a plain pipeline already names a stranger in one photo in six
#: (docs/accuracy.md), and at 0.9 the shared scenes name 8 strangers.
MAX_THRESHOLD_FACTOR = 1.4


@dataclass(frozen=True)
class MatchSettings:
    """Rules that decide when a face is named.

    Attributes:
        threshold: largest embedding distance at which a face may be named; None takes the embedder's
            calibrated default (its manifest's ``default_threshold``). Lower means fewer false names and
            more unknowns.
        margin: the second-closest person must be at least this much further away than the closest.
        min_face_px: faces smaller than this (height in source pixels) are never named.
        min_sharpness: faces blurrier than this (quality.sharpness) are never named.
        min_score: faces the detector itself scores under this (O-Net's face probability) are never named in
            photos: a hand or a pattern that MTCNN half-believes is a face can embed close to somebody. On the
            105 shared face photos the main face scores at least 0.93 clean, 0.88 at ~44 px and 0.81 at ~30 px
            darkened and recompressed (benchmarks/RESULTS.md, 2026-12-06); a wrist at 0.72 came within the
            threshold of a registered person. Video tracks decide from several frames instead (video/identity.py).
        resolution_match: compare faces under 64 px with references re-rendered at a matching
            resolution (faces/resolution.py). Off by default: it raised recall on degraded photos
            (0.15 -> 0.54) but brought a real 34 px stranger in a street video to 0.44 of a registered
            person, i.e. it names strangers (docs/accuracy.md).
    """

    threshold: float | None = None
    margin: float = 0.04
    min_face_px: float = 24.0
    min_sharpness: float = 0.0
    min_score: float = 0.8
    resolution_match: bool = False

    def __post_init__(self) -> None:
        def number(name: str, value: object, *, positive: bool) -> None:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
                and (value > 0 if positive else value >= 0)
            if not ok:
                need = "a finite number > 0" if positive else "a finite number >= 0"
                raise ValueError(f"MatchSettings.{name} must be {need}, got {value!r}")

        if self.threshold is not None:
            number("threshold", self.threshold, positive=True)
        number("margin", self.margin, positive=False)
        number("min_face_px", self.min_face_px, positive=False)
        number("min_sharpness", self.min_sharpness, positive=False)
        number("min_score", self.min_score, positive=False)
        if self.min_score > 1:
            raise ValueError(f"MatchSettings.min_score must be a probability in [0, 1], got {self.min_score!r}")
        if not isinstance(self.resolution_match, bool):
            raise ValueError(f"MatchSettings.resolution_match must be True or False, got {self.resolution_match!r}")

    def resolved(self, default_threshold: float) -> MatchSettings:
        """These settings with ``threshold`` filled in from the embedder's default when unset.

        Raises:
            ValueError: a threshold above ``MAX_THRESHOLD_FACTOR`` x the embedder's calibrated one.
        """
        if self.threshold is not None:
            if self.threshold > MAX_THRESHOLD_FACTOR * default_threshold:
                raise ValueError(
                    f"MatchSettings.threshold {self.threshold} is a distance, where lower is stricter: above "
                    f"{MAX_THRESHOLD_FACTOR * default_threshold:.2f} ({MAX_THRESHOLD_FACTOR}x this embedder's calibrated "
                    f"{default_threshold}) strangers are routinely named (docs/accuracy.md); similarity, which the "
                    "report shows, is 1 - distance")
            return self
        return dataclasses.replace(self, threshold=default_threshold)

    def similarity(self, distance: Tensor) -> Tensor:
        """Similarity reported to users: ``1 - distance``, clipped to [0, 1]."""
        return (1.0 - distance).clamp(0.0, 1.0)


@dataclass(frozen=True)
class GalleryIndex:
    """Reference embeddings of the registered people, ready for matching on one device.

    Attributes:
        names: P person names; person index p refers to ``names[p]``.
        embeddings: (R, D) float32 reference embeddings (several per person).
        owner: (R,) int64, the person index of each reference row.
        variants: optional (L, R, D) embeddings of the same references re-rendered at the face heights
            of ``faces.resolution.RESOLUTION_LEVELS`` (resolution-matched comparison of small faces).
    """

    names: list[str]
    embeddings: Tensor
    owner: Tensor
    variants: Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.names)

    def to(self, device: torch.device | str) -> GalleryIndex:
        variants = None if self.variants is None else self.variants.to(device)
        return GalleryIndex(self.names, self.embeddings.to(device), self.owner.to(device), variants)

    @staticmethod
    def empty(dim: int = 128, device: torch.device | str = "cpu") -> GalleryIndex:
        return GalleryIndex([], torch.zeros(0, dim, device=device), torch.zeros(0, dtype=torch.long, device=device))

    def without(self, names: Sequence[str]) -> GalleryIndex:
        """The same index with some people left out (for open-set evaluation)."""
        keep = [i for i, n in enumerate(self.names) if n not in set(names)]
        remap = torch.full((len(self.names),), -1, dtype=torch.long)
        remap[keep] = torch.arange(len(keep))
        owner = remap[self.owner.cpu()]
        rows = owner >= 0
        dev_rows = rows.to(self.embeddings.device)
        return GalleryIndex([self.names[i] for i in keep], self.embeddings[dev_rows], owner[rows].to(self.owner.device),
                            None if self.variants is None else self.variants[:, dev_rows])


def person_distances(emb: Tensor, index: GalleryIndex, size_px: Tensor | None = None) -> Tensor:
    """Distance of each face to each registered person: the nearest of that person's references.

    Args:
        emb: (N, D) face embeddings on the index's device.
        index: the gallery; P may be 0.
        size_px: (N,) face heights; when given and the index has resolution variants, small faces are
            compared with references re-rendered at a matching resolution (faces/resolution.py).
    Returns:
        (N, P) float32 Euclidean distances; (N, 0) when nobody is registered.
    """
    n, p = emb.shape[0], index.size
    if n == 0 or p == 0:
        return emb.new_zeros((n, p))
    if size_px is not None and index.variants is not None:
        from .faces.resolution import resolution_level

        refs = torch.cat([index.variants, index.embeddings[None]]).float()  # (L + 1, R, D)
        level = resolution_level(size_px.float()).clamp(max=refs.shape[0] - 1)  # (N,)
        d_all = torch.cdist(emb.float()[None].expand(refs.shape[0], -1, -1), refs)  # (L + 1, N, R)
        d = d_all.gather(0, level[None, :, None].expand(1, n, d_all.shape[2]))[0]  # each face at its level
    else:
        d = torch.cdist(emb.float(), index.embeddings.float())  # (N, R)
    out = emb.new_full((n, p), float("inf"))
    return out.scatter_reduce(1, index.owner.expand(n, -1), d, reduce="amin", include_self=True)


def assign_identities(
    dist: Tensor, groups: Tensor, eligible: Tensor, settings: MatchSettings
) -> tuple[Tensor, Tensor]:
    """Name each face or leave it unknown (open set), one person at most once per group.

    Args:
        dist: (N, P) distances from :func:`person_distances`; any device.
        groups: (N,) int64, faces with the same value (same photo or frame) compete for people.
        eligible: (N,) bool, faces good enough to be named at all (size, sharpness).
        settings: threshold and margin.
    Returns:
        identity (N,) int64 person index or :data:`UNKNOWN`; distance (N,) float32 to the assigned
        person, or to the nearest person for unknown faces (inf when nobody is registered).
        Both on ``dist``'s device.
    """
    n, p = dist.shape
    device = dist.device
    identity = torch.full((n,), UNKNOWN, dtype=torch.long, device=device)
    if n == 0 or p == 0:
        return identity, dist.new_full((n,), float("inf"))
    best2 = dist.topk(min(2, p), dim=1, largest=False).values
    nearest = best2[:, 0]
    second = best2[:, 1] if p > 1 else torch.full_like(nearest, float("inf"))
    # A face competes for a person only if that person passes the threshold and the margin
    # over the face's runner-up; only then can the assignment pick it.
    runner_up = torch.where(dist <= nearest[:, None], second[:, None], nearest[:, None])
    if settings.threshold is None:
        raise ValueError("settings.threshold is unset: call settings.resolved(embedder.threshold) first")
    candidate = (dist <= settings.threshold) & (runner_up - dist >= settings.margin) & eligible[:, None]
    if not bool(candidate.any()):
        return identity, nearest
    # One small host copy of the candidate rows: the assignment itself is tiny and per photo.
    cand = candidate.cpu().numpy()
    d_host = dist.float().cpu().numpy()
    g_host = groups.cpu().numpy()
    ident_host = np.full(n, UNKNOWN, dtype=np.int64)
    rows = np.flatnonzero(cand.any(axis=1))
    for g in np.unique(g_host[rows]):
        faces = rows[g_host[rows] == g]
        people = np.flatnonzero(cand[faces].any(axis=0))
        cost = np.where(cand[np.ix_(faces, people)], d_host[np.ix_(faces, people)], 1e6)
        fi, pj = linear_sum_assignment(cost)
        ok = cost[fi, pj] < 1e6
        ident_host[faces[fi[ok]]] = people[pj[ok]]
    identity = torch.from_numpy(ident_host).to(device)
    named = identity >= 0
    distance = torch.where(named, dist.gather(1, identity.clamp(min=0)[:, None])[:, 0], nearest)
    return identity, distance
