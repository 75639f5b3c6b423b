"""face_sides: two-faced (a face at a back-side camera), faceless (the back at a face-side camera), consistent."""
import pytest
import torch

from diffrep_lite.consistency import face_sides


def test_face_sides_on_constructed_predictions():
    cams = list(range(8))                       # bin 0 sees the face, bin 4 the back
    right = cams                                # every view predicted at its own bin
    faceless = [4, 1, 2, 3, 4, 5, 6, 7]         # the back shown at the front camera (bin 0)
    two_faced = [0, 1, 2, 3, 0, 5, 6, 7]        # a face shown at the back camera (bin 4)
    both = [4, 1, 2, 3, 0, 5, 6, 7]
    side = [2, 1, 2, 3, 4, 5, 6, 7]             # wrong, but a side view: neither
    out = face_sides(torch.tensor([right, faceless, two_faced, both, side]), cams)
    assert out["two_faced"].tolist() == [False, False, True, True, False]
    assert out["faceless"].tolist() == [False, True, False, True, False]
    assert out["consistent"].tolist() == [True, False, False, False, True]
    # a turned object, un-turned by its offset, is consistent; faces at bins 7 and 1 count as faces
    turned = torch.tensor([[(b + 3) % 8 for b in cams]])
    assert face_sides(turned - 3, cams)["consistent"].tolist() == [True]
    assert face_sides(torch.tensor([[0, 1, 2, 3, 7, 5, 6, 7]]), cams)["two_faced"].tolist() == [True]


def test_face_sides_checks_its_shapes():
    with pytest.raises(ValueError, match="one camera bin per column"):
        face_sides(torch.zeros(2, 8, dtype=torch.long), [0, 1, 2])
