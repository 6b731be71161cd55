"""The matcher's rules: threshold, margin, eligibility, one person per photo."""

from __future__ import annotations

import pytest
import torch

from influvision.match import UNKNOWN, GalleryIndex, MatchSettings, assign_identities, person_distances

S = MatchSettings(threshold=0.5, margin=0.05)


def _index() -> GalleryIndex:
    emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [0.0, 1.0]])
    return GalleryIndex(["ann", "bob", "cy"], emb, torch.tensor([0, 0, 1, 2]))


def test_person_distance_is_the_nearest_reference_of_that_person():
    d = person_distances(torch.tensor([[0.12, 0.0]]), _index())
    assert torch.allclose(d, torch.tensor([[0.02, 0.88, (0.12**2 + 1) ** 0.5]]), atol=1e-5)


def test_face_far_from_everybody_stays_unknown():
    ident, dist = assign_identities(torch.tensor([[0.7, 0.9]]), torch.tensor([0]), torch.tensor([True]), S)
    assert ident.tolist() == [UNKNOWN] and abs(float(dist[0]) - 0.7) < 1e-6


def test_face_between_two_people_within_margin_stays_unknown():
    ident, _ = assign_identities(torch.tensor([[0.40, 0.42]]), torch.tensor([0]), torch.tensor([True]), S)
    assert ident.tolist() == [UNKNOWN]


def test_ineligible_face_is_never_named_even_when_close():
    ident, _ = assign_identities(torch.tensor([[0.1, 0.9]]), torch.tensor([0]), torch.tensor([False]), S)
    assert ident.tolist() == [UNKNOWN]


def test_one_person_at_most_once_per_photo_but_once_in_each_photo():
    dist = torch.tensor([[0.20, 0.90], [0.25, 0.80]])
    same_photo, _ = assign_identities(dist, torch.tensor([0, 0]), torch.tensor([True, True]), S)
    two_photos, _ = assign_identities(dist, torch.tensor([0, 1]), torch.tensor([True, True]), S)
    assert same_photo.tolist() == [0, UNKNOWN]
    assert two_photos.tolist() == [0, 0]


def test_duplicate_person_in_one_photo_leaves_the_weaker_face_unknown():
    dist = torch.tensor([[0.20, 0.90], [0.30, 0.95]])
    ident, _ = assign_identities(dist, torch.tensor([0, 0]), torch.tensor([True, True]), S)
    assert ident.tolist() == [0, UNKNOWN]


def test_empty_gallery_names_nobody():
    ident, dist = assign_identities(torch.zeros(3, 0), torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool), S)
    assert ident.tolist() == [UNKNOWN] * 3 and torch.isinf(dist).all()


def test_leaving_people_out_of_the_index_removes_their_references():
    idx = _index().without(["ann"])
    assert idx.names == ["bob", "cy"] and idx.owner.tolist() == [0, 1] and idx.embeddings.shape == (2, 2)


@pytest.mark.parametrize("kwargs", [
    {"threshold": -0.1}, {"threshold": 0.0}, {"threshold": float("nan")}, {"threshold": "0.5"},
    {"margin": -0.01}, {"margin": float("inf")}, {"min_face_px": -3}, {"min_sharpness": None},
    {"resolution_match": "yes"},
])
def test_settings_out_of_range_are_refused_when_made(kwargs):
    with pytest.raises(ValueError, match="MatchSettings"):
        MatchSettings(**kwargs)


def _identify_two_faces(scores: list[float], sizes: list[float], settings: MatchSettings) -> tuple[list, list]:
    """Two faces in two photos with the same embedding, 0.1 from ann's only reference: identities, eligibility."""
    from influvision.api import identify
    from influvision.types import Faces

    index = GalleryIndex(["ann"], torch.tensor([[0.0, 0.0]]), torch.tensor([0]))
    boxes = torch.tensor([[0.0, 0.0, size, size] for size in sizes])
    faces = Faces(image_index=torch.tensor([0, 1]), boxes=boxes, scores=torch.tensor(scores),
                  landmarks=torch.zeros(2, 5, 2)).with_columns(
        embedding=torch.tensor([[0.1, 0.0], [0.1, 0.0]]), size_px=torch.tensor(sizes),
        sharpness=torch.tensor([0.1, 0.1]))
    out = identify(faces, index, settings)
    return out.columns["identity"].tolist(), out.columns["eligible"].tolist()


def test_a_detection_the_detector_doubts_is_never_named_in_a_photo():
    # Same embedding, but 0.72 < min_score 0.8.
    assert _identify_two_faces([0.99, 0.72], [40.0, 40.0], MatchSettings(threshold=0.5)) == ([0, UNKNOWN],
                                                                                              [True, False])
    assert _identify_two_faces([0.99, 0.72], [40.0, 40.0], MatchSettings(threshold=0.5, min_score=0.7))[0] == [0, 0]


def test_a_face_under_min_face_px_is_never_named_in_a_photo():
    # Same embedding and score, but 20 px < min_face_px 24.
    assert _identify_two_faces([0.99, 0.99], [40.0, 20.0], MatchSettings(threshold=0.5)) == ([0, UNKNOWN],
                                                                                              [True, False])


def test_a_face_just_over_the_threshold_stays_unknown():
    ident, _ = assign_identities(torch.tensor([[0.51, 0.9]]), torch.tensor([0]), torch.tensor([True]), S)
    just_under, _ = assign_identities(torch.tensor([[0.49, 0.9]]), torch.tensor([0]), torch.tensor([True]), S)
    assert ident.tolist() == [UNKNOWN] and just_under.tolist() == [0]
