"""Synthetic lesions: placement inside tissue, local changes, determinism, subtle contrasts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from punmri.data.batches import suite_seed
from punmri.data.lesions import insert_lesions, lesion_images, plan_lesions, render_lesions
from punmri.data.phantoms import random_ellipses
from punmri.errors import InputError


@pytest.fixture
def image() -> np.ndarray:
    """A 48x40 head-like phantom in [0, 1]."""
    return random_ellipses((48, 40), 5, np.random.default_rng(3)).astype(np.float32)


def test_roi_nonempty_inside_tissue_and_off_the_border(image: np.ndarray) -> None:
    for seed in range(5):
        out, roi = insert_lesions(image, np.random.default_rng(seed), tissue_threshold=0.1)
        assert out.shape == image.shape and out.dtype == np.float32
        assert roi.dtype == np.bool_ and roi.any()
        assert (image[roi] > 0.1).all()
        assert not (roi[0].any() or roi[-1].any() or roi[:, 0].any() or roi[:, -1].any())
        assert out.min() >= 0 and out.max() <= 1


def test_image_changes_only_inside_the_roi(image: np.ndarray) -> None:
    for seed in range(5):
        out, roi = insert_lesions(image, np.random.default_rng(seed))
        # a re-normalisation (bright lesion above 1) scales the whole image by one factor
        tissue = ~roi & (image > 0.05)
        ratio = out[tissue] / image[tissue]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
        assert np.abs(out[roi] / ratio[0] - image[roi]).max() > 1e-3
        assert (out[~roi & (image == 0)] == 0).all()


def test_deterministic_per_generator_seed(image: np.ndarray) -> None:
    a = insert_lesions(image, np.random.default_rng(11))
    b = insert_lesions(image, np.random.default_rng(11))
    c = insert_lesions(image, np.random.default_rng(12))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_lesions_are_separate_and_count_in_range(image: np.ndarray) -> None:
    for seed in range(5):
        lesions = plan_lesions(image, np.random.default_rng(seed), n=(2, 3))
        assert 1 <= len(lesions) <= 3
        _, roi = render_lesions(image, lesions)
        _, count = ndimage.label(roi)
        assert count == len(lesions)


def test_subtle_and_obvious_contrasts_occur(image: np.ndarray) -> None:
    contrasts = np.array(
        [
            lesion.contrast
            for seed in range(30)
            for lesion in plan_lesions(image, np.random.default_rng(seed))
        ]
    )
    assert np.all(np.abs(contrasts) >= 0.05) and np.all(np.abs(contrasts) <= 0.4)
    assert np.any(np.abs(contrasts) <= 0.15)  # subtle
    assert np.any(np.abs(contrasts) >= 0.3)  # obvious
    assert np.any(contrasts < 0) and np.any(contrasts > 0)


def test_lesion_images_seeds_per_slice_and_suite(image: np.ndarray) -> None:
    stack = np.stack([image, image[::-1].copy()])
    imgs, rois = lesion_images(stack, seed=5, suite_name="lesions")
    again, rois_again = lesion_images(stack, seed=5, suite_name="lesions")
    other, rois_other = lesion_images(stack, seed=5, suite_name="lesions-b")
    assert imgs.shape == stack.shape and rois.shape == stack.shape and rois.dtype == np.bool_
    np.testing.assert_array_equal(imgs, again)
    np.testing.assert_array_equal(rois, rois_again)
    assert not np.array_equal(rois, rois_other)
    rng = np.random.default_rng([5, suite_seed("lesions"), 1, 7])
    np.testing.assert_array_equal(insert_lesions(stack[1], rng)[1], rois[1])


def test_bad_inputs_raise_input_error(image: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="image"):
        insert_lesions(np.zeros((4, 4, 4), np.float32), rng)
    with pytest.raises(InputError, match="image"):
        insert_lesions(image * 3, rng)
    with pytest.raises(InputError, match="image"):  # no tissue at all
        insert_lesions(np.zeros((16, 16), np.float32), rng)
    with pytest.raises(InputError, match="radius_px"):
        insert_lesions(image, rng, radius_px=(5, 2))
    with pytest.raises(InputError, match="n"):
        insert_lesions(image, rng, n=(0, 2))
    with pytest.raises(InputError, match="rng"):
        insert_lesions(image, 0)  # type: ignore[arg-type]
