"""The one place a mixed-integer program is solved: HiGHS through ``highspy``.

Every planner builds its model as plain arrays (objective, sparse constraint matrix, bounds,
integrality) and calls :func:`solve_milp`. Swapping the solver means changing this module only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import highspy
import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from dora_rl.errors import InfeasibleError

log = logging.getLogger(__name__)

INF = highspy.kHighsInf
LARGEST_COEFFICIENT = 1e15
"""HiGHS's ``large_matrix_value``: larger constraint coefficients are refused."""
LARGEST_VALUE = 1e20
"""HiGHS's ``infinite_cost`` and ``infinite_bound``: larger costs or bounds would read as
infinite."""


class NumericRangeError(InfeasibleError):
    """The program holds a value HiGHS cannot take (NaN, an infinite coefficient, or one above
    :data:`LARGEST_COEFFICIENT`); the planner turns it into a line naming the job."""


def _check_range(cost: NDArray[np.float64], values: NDArray[np.float64],
                 bounds: list[NDArray[np.float64]]) -> None:
    """Raise :class:`NumericRangeError` unless every number is one HiGHS solves faithfully."""
    finite_bounds = [b[np.isfinite(b)] for b in bounds]
    if any(np.isnan(b).any() for b in bounds):
        raise NumericRangeError("a bound of the program is NaN")
    for what, arr, limit in (("cost", cost, LARGEST_VALUE),
                             ("constraint coefficient", values, LARGEST_COEFFICIENT),
                             ("bound", np.concatenate(finite_bounds), LARGEST_VALUE)):
        if not np.isfinite(arr).all():
            raise NumericRangeError(f"a {what} of the program is not finite")
        if arr.size and np.abs(arr).max() >= limit:
            raise NumericRangeError(f"a {what} of the program is {np.abs(arr).max():.3g}, beyond "
                                    f"the solver's limit {limit:g}")


@dataclass(frozen=True)
class MilpResult:
    """Outcome of one solve.

    Attributes:
        status: ``"optimal"``, ``"infeasible"``, ``"time_limit"`` (with or without a solution)
            or another HiGHS model status in lower case.
        x: Column values (None without a feasible solution).
        objective: Objective value (NaN without a solution).
        solve_time_s: Wall time of the solve.
        mip_gap: Relative gap between the solution and the proven bound (0 when optimal).
    """

    status: str
    x: NDArray[np.float64] | None
    objective: float
    solve_time_s: float
    mip_gap: float

    @property
    def optimal(self) -> bool:
        """Solved to proven optimality."""
        return self.status == "optimal"


def solve_milp(cost: NDArray[np.float64], matrix: sparse.spmatrix | sparse.sparray,
               row_lower: NDArray[np.float64], row_upper: NDArray[np.float64],
               col_lower: NDArray[np.float64], col_upper: NDArray[np.float64],
               integer: NDArray[np.bool_], *, offset: float = 0.0,
               time_limit_s: float = 60.0, mip_rel_gap: float = 1e-6,
               warm_start: tuple[NDArray[np.int64], NDArray[np.float64]] | None = None,
               threads: int = 1, presolve: str = "off",
               cutoff: float | None = None) -> MilpResult:
    """Minimise ``cost @ x + offset`` s.t. ``row_lower <= matrix @ x <= row_upper``, bounds.

    Infinite bounds may be given as ``np.inf``; any other value outside HiGHS's range raises
    :class:`NumericRangeError` instead of a silent ``not_set`` status. ``warm_start`` gives
    (column indices, values) of a known solution (e.g. the previous plan); HiGHS completes the
    other columns and starts from it as its first incumbent. ``cutoff`` is an objective value
    already achieved elsewhere: the search prunes anything that cannot beat it (and may report
    infeasible).

    Example:
        >>> import numpy as np
        >>> from scipy import sparse
        >>> r = solve_milp(np.array([-1.0, -1.0]), sparse.csc_array([[2.0, 1.0]]),
        ...                np.array([-np.inf]), np.array([3.0]), np.zeros(2), np.ones(2),
        ...                np.array([True, True]))
        >>> r.status, r.objective
        ('optimal', -2.0)
    """
    start = time.perf_counter()
    a = sparse.csc_array(matrix)
    _check_range(np.asarray(cost, dtype=np.float64), a.data.astype(np.float64),
                 [np.asarray(v, dtype=np.float64)
                  for v in (row_lower, row_upper, col_lower, col_upper)])
    n_rows, n_cols = a.shape
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_cols, n_rows
    lp.offset_ = float(offset)
    lp.col_cost_ = np.asarray(cost, dtype=np.float64)
    lp.col_lower_ = np.where(np.isneginf(col_lower), -INF, col_lower).astype(np.float64)
    lp.col_upper_ = np.where(np.isposinf(col_upper), INF, col_upper).astype(np.float64)
    lp.row_lower_ = np.where(np.isneginf(row_lower), -INF, row_lower).astype(np.float64)
    lp.row_upper_ = np.where(np.isposinf(row_upper), INF, row_upper).astype(np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(np.float64)
    lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                       for i in integer]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("presolve", presolve)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    if cutoff is not None and np.isfinite(cutoff):
        h.setOptionValue("objective_bound", float(cutoff))  # prune anything no better
    h.passModel(lp)
    if warm_start is not None:
        idx, val = warm_start
        h.setSolution(len(idx), np.asarray(idx, dtype=np.int32), np.asarray(val, dtype=np.float64))
    h.run()
    status = h.modelStatusToString(h.getModelStatus()).lower().replace(" ", "_")
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.array(h.getSolution().col_value) if has_solution else None
    objective = float(info.objective_function_value) if has_solution else float("nan")
    gap = float(info.mip_gap) if has_solution else float("inf")
    if status == "time_limit_reached":
        status = "time_limit"
    elapsed = time.perf_counter() - start
    log.debug("milp %dx%d: %s obj=%g gap=%g in %.3fs", n_rows, n_cols, status, objective, gap,
              elapsed)
    return MilpResult(status=status, x=x, objective=objective, solve_time_s=elapsed,
                      mip_gap=0.0 if status == "optimal" else gap)
