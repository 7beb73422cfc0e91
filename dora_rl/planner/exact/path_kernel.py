"""The path bound's dynamic program compiled (numba): least weight from each (layer, usage
state) to the end of the model, over every band of the cycle floor at once.

:func:`to_end_bands` is :func:`dora_rl.planner.exact.pathbound._to_end` for many bands in one
compiled pass over the candidates (the numpy version builds ``[candidates x states]`` arrays a
layer at a time and a band at a time; here nothing is allocated but the result). The two agree
to the bit (``tests/test_planner_exact.py``).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(cache=True, nogil=True)
def _kernel(first: NDArray[np.int64], end: NDArray[np.int64], group: NDArray[np.int64],
            weight: NDArray[np.float64], floor: NDArray[np.float64], band_hi: NDArray[np.float64],
            fits: NDArray[np.bool_], code: NDArray[np.int64], n_layers: int
            ) -> NDArray[np.float64]:  # pragma: no cover - compiled
    n_bands, n_states = band_hi.shape[0], fits.shape[1]
    out = np.full((n_bands, n_layers + 1, n_states), np.inf)
    out[:, n_layers, :] = 0.0
    order = np.argsort(first, kind="mergesort")
    starts = np.searchsorted(first[order], np.arange(n_layers + 1))
    for k in range(n_bands):
        hi = band_hi[k]
        table = out[k]
        for j in range(n_layers - 1, -1, -1):
            row = table[j]
            for p in range(starts[j], starts[j + 1]):
                i = order[p]
                if not floor[i] <= hi:
                    continue
                g = group[i]
                e = end[i]
                c = code[g]
                w = weight[i]
                nxt = table[e]
                usable = fits[g]
                for s in range(n_states):
                    if usable[s]:
                        v = w + nxt[s + c]
                        if v < row[s]:
                            row[s] = v
    return out


def to_end_bands(first: NDArray[np.int64], end: NDArray[np.int64], group: NDArray[np.int64],
                 weight: NDArray[np.float64], floor: NDArray[np.float64],
                 band_hi: NDArray[np.float64], fits: NDArray[np.bool_], code: NDArray[np.int64],
                 n_layers: int) -> NDArray[np.float64]:
    """``[bands, L+1, S]``: per band (candidates whose cycle floor is at most its upper edge),
    the least total weight of a chain of candidates from (layer, usage state) to the end.

    Example:
        Two layers, one device class with one device, candidates [0,1), [1,2) and [0,2):

        >>> i = lambda *v: np.array(v, dtype=np.int64)
        >>> fits = np.array([[True, False]])  # a state with the device free fits the group
        >>> out = to_end_bands(i(0, 1, 0), i(1, 2, 2), i(0, 0, 0), np.array([1.0, 1.0, 3.0]),
        ...                    np.zeros(3), np.array([np.inf]), fits, i(1), 2)
        >>> out[0, 0].tolist()  # one device: only the whole-model candidate chains
        [3.0, inf]
    """
    return _kernel(np.ascontiguousarray(first, dtype=np.int64),
                   np.ascontiguousarray(end, dtype=np.int64),
                   np.ascontiguousarray(group, dtype=np.int64),
                   np.ascontiguousarray(weight, dtype=np.float64),
                   np.ascontiguousarray(floor, dtype=np.float64),
                   np.ascontiguousarray(band_hi, dtype=np.float64),
                   np.ascontiguousarray(fits, dtype=np.bool_),
                   np.ascontiguousarray(code, dtype=np.int64), int(n_layers))


__all__ = ["to_end_bands"]
