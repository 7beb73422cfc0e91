"""A small builder for sparse mixed-integer programs (columns, rows, bounds) fed to HiGHS."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from dora_rl.planner.exact.solver import MilpResult, solve_milp

IntArray = NDArray[np.int64]


class MilpBuilder:
    """Collects variables and linear rows; :meth:`solve` hands them to :func:`solve_milp`.

    Example:
        >>> m = MilpBuilder()
        >>> x = m.var(2, hi=1, integer=True, cost=[-1.0, -1.0])
        >>> m.row(x, [2.0, 1.0], hi=3.0)
        >>> r = m.solve()
        >>> r.objective
        -2.0
    """

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.integer: list[bool] = []
        self._rows: list[IntArray] = []
        self._cols: list[IntArray] = []
        self._vals: list[NDArray[np.float64]] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.offset = 0.0

    @property
    def n_cols(self) -> int:
        """Variables so far."""
        return len(self.cost)

    def var(self, n: int, lo: float = 0.0, hi: float = np.inf, integer: bool = False,
            cost: float | list[float] | NDArray[np.float64] = 0.0) -> IntArray:
        """Add ``n`` variables; returns their column indices."""
        start = self.n_cols
        costs = np.broadcast_to(np.asarray(cost, dtype=np.float64), (n,))
        self.cost.extend(costs.tolist())
        self.lo.extend([lo] * n)
        self.hi.extend([hi] * n)
        self.integer.extend([integer] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def row(self, cols: IntArray | list[int], vals: NDArray[np.float64] | list[float] | float,
            lo: float = -np.inf, hi: float = np.inf) -> None:
        """Add ``lo <= sum(vals * x[cols]) <= hi``."""
        cols_a = np.asarray(cols, dtype=np.int64)
        vals_a = np.broadcast_to(np.asarray(vals, dtype=np.float64), cols_a.shape)
        r = len(self.row_lo)
        self._rows.append(np.full(cols_a.shape, r, dtype=np.int64))
        self._cols.append(cols_a)
        self._vals.append(np.array(vals_a))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def rows(self, cols: IntArray, vals: NDArray[np.float64], lo: NDArray[np.float64] | float,
             hi: NDArray[np.float64] | float) -> None:
        """Add many rows: row i is ``lo[i] <= sum_k vals[i, k] * x[cols[i, k]] <= hi[i]``."""
        n, k = cols.shape
        first = len(self.row_lo)
        self._rows.append(np.repeat(np.arange(first, first + n, dtype=np.int64), k))
        self._cols.append(cols.reshape(-1).astype(np.int64))
        self._vals.append(vals.reshape(-1).astype(np.float64))
        self.row_lo.extend(np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,)).tolist())
        self.row_hi.extend(np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,)).tolist())

    def matrix(self) -> sparse.csc_array:
        """The constraint matrix."""
        if not self._rows:
            return sparse.csc_array((0, self.n_cols))
        rows = np.concatenate(self._rows)
        cols = np.concatenate(self._cols)
        vals = np.concatenate(self._vals)
        keep = vals != 0
        return sparse.csc_array((vals[keep], (rows[keep], cols[keep])),
                                shape=(len(self.row_lo), self.n_cols))

    def solve(self, time_limit_s: float = 60.0,
              warm_start: tuple[IntArray, NDArray[np.float64]] | None = None,
              cutoff: float | None = None) -> MilpResult:
        """Solve to proven optimality (or the time limit)."""
        return solve_milp(np.array(self.cost), self.matrix(), np.array(self.row_lo),
                          np.array(self.row_hi), np.array(self.lo), np.array(self.hi),
                          np.array(self.integer), offset=self.offset,
                          time_limit_s=time_limit_s, warm_start=warm_start, cutoff=cutoff)
