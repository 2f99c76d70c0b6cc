"""Image-quality metrics on magnitude images, following fastMRI's conventions.

Conventions (those of fastMRI's ``evaluate.py``, applied per 2D slice here):

* Every metric compares *magnitude* images: complex inputs are replaced by ``|x|`` first, and all
  arithmetic is done in float64.
* ``data_range`` defaults to ``target.max()``, the maximum of the ground-truth magnitude. fastMRI
  takes this maximum over a whole volume; this package scores slices independently, so it is the
  maximum of the ground-truth *slice*. Pass ``data_range`` explicitly to use another convention.
* ``psnr = 10 log10(data_range^2 / MSE)`` with ``MSE = mean((target - pred)^2)`` (``inf`` when the
  prediction is exact).
* ``ssim`` is :func:`skimage.metrics.structural_similarity` with fastMRI's settings: a 7x7 uniform
  (not Gaussian) window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariance, and the ``data_range``
  above. The score is the mean SSIM map over the valid (unpadded) window positions.
* ``nmse = ||target - pred||^2 / ||target||^2`` (Frobenius norms).

Failure handling: a non-finite *target* is bad input and raises :class:`~punmri.errors.InputError`
naming the slice; a non-finite *prediction* (a diverged model) makes every metric ``nan`` so that
the failure is counted in the results table instead of crashing the run.

ROI (lesion) metrics, :func:`roi_metrics`:

* ``psnr`` uses only the ROI pixels for the MSE, with ``data_range`` from the full target slice.
* ``ssim`` is computed on the ROI's bounding box, padded by ``pad`` pixels on every side (clipped
  to the image and enlarged to at least 7x7 so that the SSIM window fits), with the same
  ``data_range``.
* ``contrast_error`` is the relative error of the lesion contrast. With ``ring`` the pixels within
  ``ring_width`` pixels of the ROI (a binary dilation of the ROI, minus the ROI) and ``mu(x, R)``
  the mean magnitude of ``x`` over region ``R``, the contrast is
  ``C(x) = mu(x, roi) - mu(x, ring)`` and ``contrast_error = |C(pred) - C(target)| / |C(target)|``:
  0 for a perfect lesion, about 1 for a prediction that erases the lesion (``C(pred) ~ 0``), and
  ``nan`` when the target itself has no contrast (``C(target) == 0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from ..errors import InputError

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# fastMRI's structural_similarity settings (skimage's defaults, spelled out so they cannot drift).
_SSIM_SETTINGS: dict[str, Any] = {
    "win_size": SSIM_WINDOW,
    "gaussian_weights": False,
    "use_sample_covariance": True,
    "K1": SSIM_K1,
    "K2": SSIM_K2,
}


def _magnitude(x: Any, what: str) -> np.ndarray:
    """``|x|`` as float64; accepts numpy arrays, array-likes and (CPU or GPU) torch tensors."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    return np.abs(arr).astype(np.float64)


def _prepare(
    target: Any, pred: Any, name: str, min_size: int = 1
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate a slice pair; return magnitudes and whether ``pred`` is finite."""
    t = _magnitude(target, f"target of {name}")
    p = _magnitude(pred, f"prediction of {name}")
    if t.ndim != 2 or p.ndim != 2:
        raise InputError(
            f"{name}: metrics need 2D images (H, W); got target {t.shape} and prediction {p.shape}"
        )
    if t.shape != p.shape:
        raise InputError(
            f"{name}: target shape {t.shape} does not match prediction shape {p.shape}"
        )
    if min(t.shape) < min_size:
        raise InputError(f"{name}: images must be at least {min_size}x{min_size}, got {t.shape}")
    if not np.isfinite(t).all():
        raise InputError(f"{name}: the target image contains NaN or infinite values")
    return t, p, bool(np.isfinite(p).all())


def _data_range(t: np.ndarray, data_range: float | None, name: str) -> float:
    dr = float(t.max()) if data_range is None else float(data_range)
    if not (np.isfinite(dr) and dr > 0):
        raise InputError(
            f"{name}: data_range must be a positive finite number, got {dr}"
            + (" (the target is all zero)" if data_range is None else "")
        )
    return dr


def _psnr(t: np.ndarray, p: np.ndarray, dr: float) -> float:
    mse = float(np.mean((t - p) ** 2))
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(dr**2 / mse))


def _ssim(t: np.ndarray, p: np.ndarray, dr: float) -> float:
    return float(structural_similarity(t, p, data_range=dr, **_SSIM_SETTINGS))


def psnr(target: Any, pred: Any, data_range: float | None = None, *, name: str = "slice") -> float:
    """Peak signal-to-noise ratio in dB of magnitude images ``(H, W)``.

    Args:
        target: ground truth ``(H, W)``, real or complex.
        pred: reconstruction ``(H, W)``, real or complex.
        data_range: peak value; default ``target.max()`` of the magnitude slice.
        name: slice name used in error messages.

    Returns:
        ``10 log10(data_range^2 / MSE)``; ``inf`` for an exact prediction, ``nan`` if ``pred`` is
        not finite.
    """
    t, p, ok = _prepare(target, pred, name)
    dr = _data_range(t, data_range, name)
    return _psnr(t, p, dr) if ok else float("nan")


def ssim(target: Any, pred: Any, data_range: float | None = None, *, name: str = "slice") -> float:
    """Structural similarity of magnitude images ``(H, W)`` (fastMRI settings, see module doc).

    Both sides must be at least 7 pixels. Returns ``nan`` if ``pred`` is not finite.
    """
    t, p, ok = _prepare(target, pred, name, min_size=SSIM_WINDOW)
    dr = _data_range(t, data_range, name)
    return _ssim(t, p, dr) if ok else float("nan")


def nmse(target: Any, pred: Any, *, name: str = "slice") -> float:
    """Normalised MSE ``||target - pred||^2 / ||target||^2`` of magnitude images ``(H, W)``.

    Returns ``nan`` if ``pred`` is not finite; an all-zero target raises ``InputError``.
    """
    t, p, ok = _prepare(target, pred, name)
    denom = float(np.sum(t**2))
    if denom == 0:
        raise InputError(f"{name}: NMSE is undefined for an all-zero target")
    return float(np.sum((t - p) ** 2) / denom) if ok else float("nan")


def slice_metrics(
    target: Any, pred: Any, data_range: float | None = None, *, name: str = "slice"
) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}`` of one magnitude slice pair ``(H, W)`` (all ``nan`` if
    ``pred`` is not finite)."""
    t, p, ok = _prepare(target, pred, name, min_size=SSIM_WINDOW)
    dr = _data_range(t, data_range, name)
    if not ok:
        return {"psnr": float("nan"), "ssim": float("nan"), "nmse": float("nan")}
    return {"psnr": _psnr(t, p, dr), "ssim": _ssim(t, p, dr), "nmse": nmse(t, p, name=name)}


def volume_metrics(
    target: Any, pred: Any, data_range: float | None = None, *, name: str = "volume"
) -> dict[str, float]:
    """fastMRI's per-volume metrics of magnitude volumes ``(S, H, W)``: PSNR and NMSE over the
    whole volume, SSIM the mean of the slices' SSIMs, all with ``data_range`` (default: the target
    volume's maximum) as the peak. All ``nan`` if ``pred`` is not finite."""
    t, p = _magnitude(target, f"target of {name}"), _magnitude(pred, f"prediction of {name}")
    if t.ndim != 3 or t.shape != p.shape:
        raise InputError(
            f"{name}: volume metrics need equal (S, H, W) volumes; got {t.shape} and {p.shape}"
        )
    dr = _data_range(t, data_range, name)
    if not np.isfinite(p).all():
        return {"psnr": float("nan"), "ssim": float("nan"), "nmse": float("nan")}
    ssims = [_ssim(ts, ps, dr) for ts, ps in zip(t, p, strict=True)]
    denom = float(np.sum(t**2))
    if denom == 0:
        raise InputError(f"{name}: NMSE is undefined for an all-zero target volume")
    return {
        "psnr": _psnr(t, p, dr),
        "ssim": float(np.mean(ssims)),
        "nmse": float(np.sum((t - p) ** 2) / denom),
    }


def _padded_box(roi: np.ndarray, pad: int) -> tuple[slice, slice]:
    """Bounding box of ``roi`` padded by ``pad``, clipped to the image, at least 7x7 if possible."""
    slices = []
    for axis in range(2):
        idx = np.flatnonzero(roi.any(axis=1 - axis))
        size = roi.shape[axis]
        lo, hi = int(idx[0]) - pad, int(idx[-1]) + 1 + pad
        lo, hi = max(lo, 0), min(hi, size)
        if hi - lo < SSIM_WINDOW:  # too small for the SSIM window: centre a 7-pixel span
            lo = min(max((lo + hi) // 2 - SSIM_WINDOW // 2, 0), size - SSIM_WINDOW)
            hi = lo + SSIM_WINDOW
        slices.append(slice(lo, hi))
    return slices[0], slices[1]


def _contrast(x: np.ndarray, roi: np.ndarray, ring: np.ndarray) -> float:
    return float(x[roi].mean() - x[ring].mean())


def roi_metrics(
    target: Any,
    pred: Any,
    roi_mask: Any,
    pad: int = 8,
    ring_width: int = 3,
    data_range: float | None = None,
    *,
    name: str = "slice",
) -> dict[str, float]:
    """Lesion-focused metrics ``{"psnr", "ssim", "contrast_error"}`` (definitions in module doc).

    Args:
        target: ground truth ``(H, W)``, real or complex (magnitude is used).
        pred: reconstruction ``(H, W)``.
        roi_mask: boolean lesion mask ``(H, W)`` with at least one pixel.
        pad: margin in pixels around the ROI's bounding box for SSIM.
        ring_width: width in pixels of the surrounding ring used for the contrast.
        data_range: peak value; default ``target.max()`` over the *full* slice.
        name: slice name used in error messages.

    Returns:
        the three metrics; all ``nan`` if ``pred`` is not finite.
    """
    t, p, ok = _prepare(target, pred, name, min_size=SSIM_WINDOW)
    roi = roi_mask.detach().cpu().numpy() if hasattr(roi_mask, "detach") else np.asarray(roi_mask)
    if roi.shape != t.shape:
        raise InputError(f"{name}: ROI mask shape {roi.shape} does not match image shape {t.shape}")
    roi = roi.astype(bool)
    if not roi.any():
        raise InputError(f"{name}: the ROI mask is empty; expected at least one lesion pixel")
    if pad < 0 or ring_width < 1:
        raise InputError(f"{name}: need pad >= 0 and ring_width >= 1, got {pad} and {ring_width}")
    ring = ndimage.binary_dilation(roi, iterations=ring_width) & ~roi
    if not ring.any():
        raise InputError(f"{name}: the ROI covers the whole image; no surrounding ring is left")
    dr = _data_range(t, data_range, name)
    if not ok:
        return {"psnr": float("nan"), "ssim": float("nan"), "contrast_error": float("nan")}
    rows, cols = _padded_box(roi, pad)
    c_target = _contrast(t, roi, ring)
    c_pred = _contrast(p, roi, ring)
    contrast_error = abs(c_pred - c_target) / abs(c_target) if c_target != 0 else float("nan")
    return {
        "psnr": _psnr(t[roi], p[roi], dr),
        "ssim": _ssim(t[rows, cols], p[rows, cols], dr),
        "contrast_error": float(contrast_error),
    }
