"""Metric values checked against hand computations and an independent convolution route."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d

from plugins.metrics import _images, invalid_items
from plugins.metrics.geometry import area, aspect_ratio
from plugins.metrics.intensity import brightness, contrast
from plugins.metrics.sharpness import blur, sharpness
from plugins.metrics.uniqueness import near_duplicate, uniqueness

LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def checkerboard(h: int, w: int) -> np.ndarray:
    return (np.indices((h, w)).sum(axis=0) % 2).astype(np.float32)


# --- intensity ---------------------------------------------------------------------------------------------
def test_flat_image_has_no_contrast_and_no_sharpness():
    flat = np.full((2, 6, 5), 0.4, dtype=np.float32)
    assert contrast(flat) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert sharpness(flat) == pytest.approx([0.0, 0.0], abs=1e-9)
    assert blur(flat) == pytest.approx([1.0, 1.0])
    assert brightness(flat) == pytest.approx([0.4, 0.4], rel=1e-6)


def test_brightness_and_contrast_of_a_known_image():
    # Pixels 0, 0.5, 1, 0.5 -> 0, 127.5, 255, 127.5: mean 127.5 (0.5); deviations -127.5, 0, 127.5, 0 -> std
    # sqrt(2 * 127.5**2 / 4) = 90.156... -> 0.35355.
    image = np.array([[[0.0, 0.5], [1.0, 0.5]]], dtype=np.float32)
    assert brightness(image) == pytest.approx([0.5])
    assert contrast(image) == pytest.approx([np.sqrt(2 * 127.5**2 / 4) / 255])


def test_colour_uses_bt601_luma_and_ignores_alpha():
    red = np.zeros((1, 2, 2, 3), dtype=np.float32)
    red[..., 0] = 1.0
    green = np.roll(red, 1, axis=-1)
    rgba = np.concatenate([red, np.zeros((1, 2, 2, 1), dtype=np.float32)], axis=-1)
    assert brightness(red) == pytest.approx([0.299])
    assert brightness(green) == pytest.approx([0.587])
    assert brightness(rgba) == pytest.approx([0.299])
    single_channel = np.full((1, 2, 2, 1), 0.25, dtype=np.float32)
    assert brightness(single_channel) == pytest.approx([0.25])


def test_integer_pixels_are_taken_as_0_to_255():
    image = np.full((1, 3, 3), 51, dtype=np.uint8)
    assert brightness(image) == pytest.approx([0.2])


# --- sharpness / blur --------------------------------------------------------------------------------------
def test_checkerboard_laplacian_variance_by_hand():
    # 4x4 0/255 checkerboard: each interior pixel differs from its 4 neighbours by 255, so the responses are
    # -1020 (at 255) and +1020 (at 0), two of each: mean 0, variance 1020**2.
    board = checkerboard(4, 4)[None]
    assert sharpness(board) == pytest.approx([1020.0**2])
    assert blur(board) == pytest.approx([1.0 - 1020.0**2])


def test_laplacian_uses_only_the_valid_interior():
    # 4x3 image, one bright pixel at (1, 1). Interior = (1, 1) and (2, 1): responses -4*255 = -1020 and +255
    # (its upper neighbour). Mean -382.5, variance 637.5**2. Padding would add border responses and change it.
    image = np.zeros((1, 4, 3), dtype=np.float32)
    image[0, 1, 1] = 1.0
    assert sharpness(image) == pytest.approx([637.5**2])


def test_linear_ramp_has_zero_laplacian():
    ramp = np.tile(np.linspace(0, 1, 9, dtype=np.float64), (7, 1))[None]
    assert contrast(ramp)[0] > 0.2
    assert sharpness(ramp) == pytest.approx([0.0], abs=1e-9)


def test_sharpness_matches_scipy_valid_convolution():
    rng = np.random.default_rng(3)
    gray = rng.random((5, 9, 11)).astype(np.float32)
    colour = rng.random((4, 8, 6, 3)).astype(np.float32)
    expected_gray = [convolve2d(g.astype(np.float64) * 255, LAPLACIAN, mode="valid").var() for g in gray]
    luma = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) * 255
    expected_colour = [convolve2d(g, LAPLACIAN, mode="valid").var() for g in luma]
    assert sharpness(gray) == pytest.approx(expected_gray, rel=1e-9)
    assert sharpness(colour) == pytest.approx(expected_colour, rel=1e-9)
    assert blur(gray) == pytest.approx(1.0 - np.array(expected_gray), rel=1e-9)


def test_images_below_3x3_have_no_sharpness():
    small = np.ones((2, 2, 5), dtype=np.float32)
    assert np.isnan(sharpness(small)).all()
    assert brightness(small) == pytest.approx([1.0, 1.0])


def test_batching_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.random((37, 6, 7)).astype(np.float32)
    images[5, 2, 2] = np.nan
    whole = [f(images) for f in (brightness, contrast, sharpness)]
    monkeypatch.setattr(_images, "MAX_BATCH_PIXELS", 6 * 7 * 4)  # batches of 4 items, the last one partial
    batched = [f(images) for f in (brightness, contrast, sharpness)]
    for a, b in zip(whole, batched, strict=True):
        np.testing.assert_array_equal(a, b)


# --- invalid items -----------------------------------------------------------------------------------------
def test_non_finite_pixels_give_nan_not_exceptions():
    images = np.full((4, 5, 5), 0.5, dtype=np.float32)
    images[1, 2, 3] = np.nan
    images[2, 0, 0] = np.inf
    for metric in (brightness, contrast, sharpness, blur):
        values = metric(images)
        assert np.isnan(values[1]) and np.isnan(values[2])
        assert np.isfinite(values[[0, 3]]).all()
    np.testing.assert_array_equal(invalid_items(images), [False, True, True, False])
    # Geometry needs only the shape.
    np.testing.assert_array_equal(area(images), [25.0] * 4)


def test_unusable_items_in_a_list_give_nan():
    good = np.full((4, 4), 0.5)
    items = [good, np.zeros(7), np.zeros((3, 3, 5)), "not an image", None, np.zeros((0, 4)), good]
    expected_bad = [False, True, True, True, True, True, False]
    np.testing.assert_array_equal(invalid_items(items), expected_bad)
    for metric in (brightness, contrast, sharpness, blur, aspect_ratio, area):
        values = metric(items)
        assert np.isnan(values[1:6]).all(), metric.__name__
        assert np.isfinite(values[[0, 6]]).all(), metric.__name__


def test_a_whole_array_of_unusable_shape_is_all_nan():
    five_channels = np.zeros((3, 4, 4, 5), dtype=np.float32)
    assert invalid_items(five_channels).all()
    assert np.isnan(brightness(five_channels)).all()
    assert np.isnan(aspect_ratio(five_channels)).all()


def test_empty_input():
    assert brightness(np.zeros((0, 4, 4), dtype=np.float32)).shape == (0,)
    assert sharpness([]).shape == (0,)
    assert invalid_items([]).shape == (0,)


# --- geometry and ragged lists -----------------------------------------------------------------------------
def test_aspect_ratio_and_area_of_differently_sized_images():
    items = [np.zeros((2, 3)), np.zeros((4, 4, 3)), np.zeros((10, 5)), np.zeros((1, 7, 1))]
    np.testing.assert_allclose(aspect_ratio(items), [1.5, 1.0, 0.5, 7.0])
    np.testing.assert_allclose(area(items), [6.0, 16.0, 50.0, 7.0])
    stacked = np.zeros((3, 20, 30), dtype=np.float32)
    np.testing.assert_allclose(aspect_ratio(stacked), [1.5] * 3)
    np.testing.assert_allclose(area(stacked), [600.0] * 3)


def test_ragged_list_matches_item_by_item():
    rng = np.random.default_rng(1)
    items = [rng.random(shape).astype(np.float32) for shape in [(5, 6), (8, 8, 3), (5, 6), (4, 9), (8, 8, 3)]]
    for metric in (brightness, contrast, sharpness):
        together = metric(items)
        alone = [metric(item[None])[0] for item in items]
        np.testing.assert_allclose(together, alone, rtol=1e-12)


# --- uniqueness --------------------------------------------------------------------------------------------
def test_exact_duplicates_score_zero_except_the_first_copy():
    # Rows 0, 1, 2 are one direction ([2, 0] normalises to [1, 0]); row 0 is the kept copy and scores its
    # distance to the nearest other direction, [0.6, 0.8]: sqrt(0.4**2 + 0.8**2) = sqrt(0.8).
    # [0, 1] and [0.6, 0.8] are sqrt(0.6**2 + 0.2**2) = sqrt(0.4) apart.
    e = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    expected = [np.sqrt(0.8), 0.0, 0.0, np.sqrt(0.4), np.sqrt(0.4)]
    np.testing.assert_allclose(uniqueness(e), expected, atol=1e-12)


def test_uniqueness_matches_brute_force():
    rng = np.random.default_rng(7)
    e = rng.normal(size=(60, 5))
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    d = np.linalg.norm(unit[:, None] - unit[None], axis=2)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(uniqueness(e), d.min(axis=1), atol=1e-12)


def test_uniqueness_edge_cases():
    assert np.isnan(uniqueness(np.array([[1.0, 2.0]]))).all()  # nothing to compare with
    np.testing.assert_array_equal(uniqueness(np.ones((3, 2))), [np.nan, 0.0, 0.0])
    e = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(uniqueness(e), [np.sqrt(2), np.nan, np.sqrt(2)])
    # -0.0 and 0.0 are the same number, so these two rows are exact duplicates.
    np.testing.assert_array_equal(uniqueness(np.array([[-0.0, 1.0], [0.0, 1.0]])), [np.nan, 0.0])
    with pytest.raises(ValueError):
        uniqueness(np.ones(4))


def test_near_duplicate_flag():
    angle = 0.01  # chord between unit vectors at this angle: 2 sin(0.005) = 0.0099999...
    e = np.array([[1.0, 0.0], [np.cos(angle), np.sin(angle)], [0.0, 3.0], [0.0, 3.0], [-1.0, 0.0]])
    np.testing.assert_array_equal(near_duplicate(e, 0.03), [True, True, False, True, False])
    np.testing.assert_array_equal(near_duplicate(e, threshold=0.005), [False, False, False, True, False])
    assert near_duplicate(np.array([[np.nan, 0.0], [1.0, 0.0]]), 0.03).tolist() == [False, False]
