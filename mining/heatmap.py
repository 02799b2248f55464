"""Maps as overlays a page can lay over an image: float maps -> RGBA uint8 heat images.

The colour scale is a fixed five-stop ramp (transparent dark blue -> blue -> green -> yellow -> red), so
the same value has the same colour in every map of a page; alpha grows with the value so the image stays
visible where the map is low. Values are scaled to [0, 1] by ``peak`` (default: the map's own maximum),
negatives count as 0 (a class map's or unit's negative evidence is not drawn).
"""

from __future__ import annotations

import numpy as np

__all__ = ["heat_rgba", "normalise"]

# value -> (r, g, b, a) at five stops; linear in between.
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array(
    [
        [0, 0, 96, 0],
        [0, 64, 255, 90],
        [0, 200, 80, 150],
        [255, 230, 0, 190],
        [230, 20, 20, 220],
    ],
    dtype=np.float64,
)


def normalise(values: np.ndarray, peak: float | None = None) -> np.ndarray:
    """float32 of the same shape in [0, 1]: ``values / peak`` clipped (peak default: the maximum).

    An all-zero or all-negative map (peak <= 0) is all 0.
    """
    v = np.asarray(values, dtype=np.float64)
    top = float(v.max(initial=0.0)) if peak is None else float(peak)
    if not np.isfinite(top) or top <= 0:
        return np.zeros(v.shape, dtype=np.float32)
    return np.clip(v / top, 0.0, 1.0).astype(np.float32)


def heat_rgba(values: np.ndarray, peak: float | None = None) -> np.ndarray:
    """uint8 (H, W, 4): the (H, W) map coloured on the fixed ramp after :func:`normalise`."""
    scaled = normalise(values, peak).astype(np.float64)
    channels = [np.interp(scaled, _STOPS, _COLOURS[:, c]) for c in range(4)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)
