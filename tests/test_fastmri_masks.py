"""fastMRI-convention column masks: acceleration, centre, padding, seeding and pair choice."""

from __future__ import annotations

import numpy as np
import pytest

from punmri.errors import InputError
from punmri.physics.sampling import fastmri_mask

WIDTH = 368
ACQUIRED = (17, 351)  # fastMRI knee: encoding limits maximum 333, centre 167
N_ACQ = ACQUIRED[1] - ACQUIRED[0]


def _center_block(width: int, n_low: int) -> slice:
    start = (width - n_low + 1) // 2
    return slice(start, start + n_low)


@pytest.mark.parametrize("acc", [4, 8])
def test_random_reaches_the_acceleration_on_average(acc: int) -> None:
    rng = np.random.default_rng(0)
    counts = [fastmri_mask(WIDTH, "random", 0.08, acc, rng, ACQUIRED).sum() for _ in range(1000)]
    assert np.mean(counts) == pytest.approx(N_ACQ / acc, rel=0.03)


@pytest.mark.parametrize("width", [28, 97, 320, 368, 372, 640])
@pytest.mark.parametrize("acc", [2, 3, 4, 8])
def test_equispaced_reaches_the_acceleration_up_to_rounding(width: int, acc: int) -> None:
    for seed in range(6):
        for acquired in [(0, width), (width // 20, width - width // 16)]:
            n = acquired[1] - acquired[0]
            mask = fastmri_mask(
                width, "equispaced", 0.04, acc, np.random.default_rng(seed), acquired
            )
            assert abs(mask.sum() - n / acc) <= 2


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_shape_dtype_centre_and_padding(kind: str) -> None:
    n_low = round(N_ACQ * 0.08)
    for seed in range(50):
        mask = fastmri_mask(WIDTH, kind, 0.08, 4, np.random.default_rng(seed), ACQUIRED)
        assert mask.shape == (WIDTH,) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert np.all(mask[_center_block(WIDTH, n_low)] == 1)
        assert mask[WIDTH // 2] == 1  # DC
        assert not mask[: ACQUIRED[0]].any() and not mask[ACQUIRED[1] :].any()


def test_same_generator_seed_gives_the_same_mask() -> None:
    for kind in ("random", "equispaced"):
        a = fastmri_mask(WIDTH, kind, (0.08, 0.04), (4, 8), np.random.default_rng([3, 7]))
        b = fastmri_mask(WIDTH, kind, (0.08, 0.04), (4, 8), np.random.default_rng([3, 7]))
        c = fastmri_mask(WIDTH, kind, (0.08, 0.04), (4, 8), np.random.default_rng([3, 8]))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_one_pair_is_drawn_per_call_from_the_lists() -> None:
    # Equispaced counts identify the pair: about 368/4 = 92 or 368/8 = 46 columns.
    rng = np.random.default_rng(1)
    counts = [fastmri_mask(WIDTH, "equispaced", (0.08, 0.04), (4, 8), rng).sum() for _ in range(60)]
    near4 = sum(abs(c - WIDTH / 4) <= 2 for c in counts)
    near8 = sum(abs(c - WIDTH / 8) <= 2 for c in counts)
    assert near4 + near8 == len(counts)
    assert near4 > 10 and near8 > 10


def test_acceleration_one_samples_every_acquired_column() -> None:
    for kind in ("random", "equispaced"):
        mask = fastmri_mask(40, kind, 0.1, 1, np.random.default_rng(0), (3, 37))
        np.testing.assert_array_equal(mask, np.r_[np.zeros(3), np.ones(34), np.zeros(3)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "gaussian"}, "unknown mask kind"),
        ({"center_fractions": (0.08, 0.04)}, "same length"),
        ({"center_fractions": 1.5}, "center_fractions"),
        ({"accelerations": 0.5}, "accelerations"),
        ({"accelerations": ()}, "at least one"),
        ({"acquired": (10, 5)}, "acquired"),
        ({"acquired": (0, 400)}, "acquired"),
        ({"center_fractions": 0.5, "accelerations": 4}, "lower the centre fraction"),
        ({"width": 0}, "width"),
    ],
)
def test_bad_arguments_raise_input_errors(kwargs: dict, message: str) -> None:
    args = {"width": WIDTH, "kind": "random", "center_fractions": 0.08, "accelerations": 4}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        fastmri_mask(rng=np.random.default_rng(0), **args)
