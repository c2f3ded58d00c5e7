"""Fused, multi-core numba kernels behind the large-input path of the option pricers.

:mod:`app.engine.options` and :mod:`app.engine.american` import this module lazily, on the
first call whose input is large enough (see ``_KERNEL_MIN_SIZE`` there), so importing the
engine never imports numba and the GUI's single-option calls never wait for a JIT compile.

Each kernel does one pass over the elements (``numba.prange``: both cores) and computes what
the numpy path computes with the same formulas, limits and iteration, element by element:

* ``black76`` price: validation, ``d1``, ``d2``, two normal cdfs, discounting, intrinsic floor;
* ``black76`` greeks: price and all five greeks sharing ``d1``/``d2``/``n(d1)``/``N(w d1)``;
* Black-76 implied vol: classification into reason codes, bracket growth and the safeguarded
  Newton on ``ln B(s) - ln c`` from Jäckel's inflection point, per element (an element stops
  when it has converged instead of riding along with the slowest one);
* the Leisen-Reimer tree for many American/Bermudan options (one option per task, the node
  prices from two short tables of powers instead of one ``exp`` per node).
* the option part of ``risk.book.revalue`` (Monte Carlo / historical full revaluation): the
  underlying of each option from its sparse delivery weights, the safe Black-76 value and the
  P&L summed per group, in vectorised passes over short row buffers, with no ``(rows,
  options)`` temporaries.
  This one is serial and ``nogil``: ``revalue``'s thread pool (or a Dask worker's threads)
  runs several row blocks at once, so it needs neither numba's thread pool nor the launch lock.

Fewer transcendental calls and no unpredictable branches: the normal cdf is W. J. Cody's
rational Chebyshev approximation (ACM TOMS 715, the one R's ``pnorm`` uses) times
``exp(-x*x/2)``, with all pieces evaluated and one selected; one exponential serves ``N(d1)``,
``N(d2)`` (``exp(-d2*d2/2) = exp(-d1*d1/2) * F/K``) and the density ``n(d1)``.  Per element that
is one ``log``, two ``exp`` (one of them the discount factor) and one ``sqrt``; libm's ``erfc``
costs two ``exp`` per call and branches on its argument, and the branch-free form made the price
loop ~2x faster per core here.  The
relative error of ``N`` is a few ulp near the centre, growing to ``~x*x/2`` ulp in the far tail
(from the rounding of ``x*x``; R splits the exponential there), i.e. ``~1e-15 * max(F, K)`` or
better on prices.  ``fastmath`` is off and ``error_model="numpy"`` (a division by zero gives
``inf``/``nan`` as in numpy, never an exception), so results agree with the numpy path (scipy's
``ndtr``) to a few units in the last place of ``max(F, K)``.

Every kernel takes 1-D contiguous arrays of one length, indexed by the ``prange`` variable
itself (a computed index such as ``i * step`` for broadcast scalars made the loop 2x slower);
the caller materialises broadcast arguments.  Kernels that validate their input (one fused
finiteness/sign check per element, no early exit) return the number of bad elements; the caller
then re-runs the numpy path, which raises the exact ``ValueError`` of the public API.

Compiled kernels are cached on disk (``cache=True``).  One I/O-ish concession: numba writes its
cache next to this file, which is not writable in a frozen/installed app, so unless the user
already set ``NUMBA_CACHE_DIR`` it is pointed, before numba is imported, at
``platformdirs.user_cache_path("QuantaEnergi") / "numba"``.  Kernel launches are serialised by
a lock so two worker threads never enter numba's thread pool at the same time (not every numba
threading layer allows concurrent launches), and use dynamic scheduling in chunks so a core busy
with another process does not hold back the whole call.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _configure_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import platformdirs

    os.environ["NUMBA_CACHE_DIR"] = str(platformdirs.user_cache_path("QuantaEnergi") / "numba")


_configure_cache_dir()

import numba  # noqa: E402  (after the cache directory is configured)
from numba import prange  # noqa: E402

FloatArray = NDArray[np.float64]

_LOCK = threading.Lock()
#: Elements (options for the tree) per work chunk: threads take chunks dynamically, so a core
#: shared with another process does not hold the whole call back (static halves would).
_CHUNK = 4096
_CHUNK_TREE = 16


class _Launch:
    """Serialise kernel launches and use dynamic scheduling with ``chunk``-sized chunks."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.saved = 0

    def __enter__(self) -> None:
        _LOCK.acquire()
        self.saved = numba.set_parallel_chunksize(self.chunk)

    def __exit__(self, *exc: object) -> None:
        numba.set_parallel_chunksize(self.saved)
        _LOCK.release()


_JIT: dict[str, Any] = {"parallel": True, "cache": True, "fastmath": False, "error_model": "numpy"}

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)
_INF = math.inf

#: Reason codes of the implied-vol kernel (indices into ``options._REASONS``).
CODE_OK, CODE_AT_INTRINSIC, CODE_BELOW, CODE_ABOVE, CODE_ZERO_EXPIRY, CODE_NO_CONV = range(6)


# --------------------------------------------------------------------------- scalar helpers


# W. J. Cody's rational Chebyshev approximations of the normal cdf (ACM TOMS 715, ``ANORM``;
# the coefficients R's ``pnorm`` uses): |x| <= 0.674, 0.674 < |x| <= sqrt(32), beyond.
_CA = (
    2.2352520354606839287,
    161.02823106855587881,
    1067.6894854603709582,
    18154.981253343561249,
    0.065682337918207449113,
)
_CB = (47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956)
_CC = (
    0.39894151208813466764,
    8.8831497943883759412,
    93.506656132177855979,
    597.27027639480026226,
    2494.5375852903726711,
    6848.1904505362823326,
    11602.651437647350124,
    9842.7148383839780218,
    1.0765576773720192317e-8,
)
_CD = (
    22.266688044328115691,
    235.38790178262499861,
    1519.377599407554805,
    6485.558298266760755,
    18615.571640885098091,
    34900.952721145977266,
    38912.003286093271411,
    19685.429676859990727,
)
_CP = (
    0.21589853405795699,
    0.1274011611602473639,
    0.022235277870649807,
    0.001421619193227893466,
    2.9112874951168792e-5,
    0.02307344176494017303,
)
_CQ = (
    1.28426009614491121,
    0.468238212480865118,
    0.0659881378689285515,
    0.00378239633202758244,
    7.29751555083966205e-5,
)
_SQRT32 = math.sqrt(32.0)


@numba.njit(inline="always", error_model="numpy", cache=True)  # type: ignore[misc]
def _ncdf(x: float, e: float) -> float:
    """Normal cdf ``N(x)`` given ``e = exp(-x*x/2)``.

    Cody's three rational approximations are all evaluated, as numerator and denominator, and
    one pair is selected before the single division: no unpredictable branch and one division
    instead of four (2-3x faster than libm's ``erfc`` here).  The ``|x| > sqrt(32)`` piece,
    a rational function of ``1/x**2``, is multiplied through by ``x**10`` so it needs no
    reciprocal.  Exact 0/1 beyond ``|x| = 37.5``.
    """
    y = abs(x)
    # |x| <= 0.674:  N = 1/2 + x A(x^2) / B(x^2)
    xsq = x * x
    ns = x * ((((_CA[4] * xsq + _CA[0]) * xsq + _CA[1]) * xsq + _CA[2]) * xsq + _CA[3])
    ds = (((xsq + _CB[0]) * xsq + _CB[1]) * xsq + _CB[2]) * xsq + _CB[3]
    # 0.674 < |x| <= sqrt(32):  N(-|x|) = e C(y) / D(y)
    nm = _CC[8] * y
    dm = y
    nm = (nm + _CC[0]) * y
    dm = (dm + _CD[0]) * y
    nm = (nm + _CC[1]) * y
    dm = (dm + _CD[1]) * y
    nm = (nm + _CC[2]) * y
    dm = (dm + _CD[2]) * y
    nm = (nm + _CC[3]) * y
    dm = (dm + _CD[3]) * y
    nm = (nm + _CC[4]) * y
    dm = (dm + _CD[4]) * y
    nm = (nm + _CC[5]) * y
    dm = (dm + _CD[5]) * y
    nm = (nm + _CC[6]) * y
    dm = (dm + _CD[6]) * y
    nm = nm + _CC[7]
    dm = dm + _CD[7]
    # |x| > sqrt(32), z = x^2:  N(-|x|) = e (1/sqrt(2 pi) - P(1/z) / (z Q(1/z))) / y
    #                                   = e (z Qr(z) / sqrt(2 pi) - Pr(z)) / (z Qr(z) y)
    z = y * y
    pr = ((((_CP[4] * z + _CP[3]) * z + _CP[2]) * z + _CP[1]) * z + _CP[0]) * z + _CP[5]
    qr = ((((_CQ[4] * z + _CQ[3]) * z + _CQ[2]) * z + _CQ[1]) * z + _CQ[0]) * z + 1.0
    zq = z * qr
    nf = _INV_SQRT_2PI * zq - pr
    df = zq * y
    small = y <= 0.67448975
    mid = y <= _SQRT32
    q = (ns if small else (nm if mid else nf)) / (ds if small else (dm if mid else df))
    tail = e * q
    big = 1.0 - tail if x > 0.0 else tail
    if y >= 37.5193:
        big = 1.0 if x > 0.0 else 0.0
    return 0.5 + q if small else big


@numba.njit(inline="always", error_model="numpy", cache=True)  # type: ignore[misc]
def _d1(x: float, s: float) -> float:
    """``d1 = x/s + s/2`` for ``x = ln(F/K)``, with its ``s == 0`` limits (±inf, 0 at the money)."""
    limit = _INF if x > 0.0 else (-_INF if x < 0.0 else 0.0)
    return x / s + 0.5 * s if s > 0.0 else limit


@numba.njit(inline="always", error_model="numpy", cache=True)  # type: ignore[misc]
def _undiscounted(
    F: float, K: float, s: float, w: float, d1: float, fk: float
) -> tuple[float, float, float]:
    """Undiscounted Black price floored at intrinsic, ``N(w d1)`` and ``e1 = exp(-d1*d1/2)``.

    ``fk = F/K``.  One exponential serves both cdfs (and the caller's density): with
    ``d1**2 - d2**2 = 2 ln(F/K)``, ``exp(-d2*d2/2) = exp(-d1*d1/2) * F/K``; it is taken at the
    ``d`` of smaller magnitude and scaled down to the other, so it never underflows early.
    """
    d2 = d1 - s if s > 0.0 else d1
    first = abs(d1) <= abs(d2)
    dm = d1 if first else d2
    em = math.exp(-0.5 * dm * dm)
    e1 = em if first else em / fk
    e2 = em * fk if first and s > 0.0 else em
    n1 = _ncdf(w * d1, e1)
    val = w * (F * n1 - K * _ncdf(w * d2, e2))
    intrinsic = w * (F - K)
    if not intrinsic > 0.0:
        intrinsic = 0.0  # +0.0, as np.maximum(-0.0, 0.0)
    return (val if val > intrinsic else intrinsic), n1, e1


# The implied-vol solver calls the price at two sites; a called (not inlined) copy there, and a
# called per-element solver, keep its first compile at ~3 s instead of ~18 s on this 2-core
# machine, for ~30 % more run time (still ~20x the vectorised Newton baseline).
_undiscounted_call = numba.njit(error_model="numpy", cache=True)(_undiscounted.py_func)


@numba.njit(inline="always", error_model="numpy", cache=True)  # type: ignore[misc]
def _ok_black(F: float, K: float, T: float, r: float, sig: float) -> bool:
    """``0 < F < inf``, ``0 <= K < inf``, ``0 <= T < inf``, ``r`` finite, ``0 <= sig < inf``.

    NaN fails every comparison; evaluated without short-circuit branches (``&``).
    """
    return (
        (F > 0.0)
        & (F < _INF)
        & (K >= 0.0)
        & (K < _INF)
        & (T >= 0.0)
        & (T < _INF)
        & (abs(r) < _INF)
        & (sig >= 0.0)
        & (sig < _INF)
    )


# --------------------------------------------------------------------------- Black-76


@numba.njit(**_JIT)  # type: ignore[misc]
def _black76_price(
    F: Any,
    K: Any,
    T: Any,
    r: Any,
    sig: Any,
    call: Any,
    res: Any,
) -> int:
    nbad = 0
    for i in prange(res.size):
        f = F[i]
        k = K[i]
        t = T[i]
        rr = r[i]
        sg = sig[i]
        # No early exit for bad input (it would cost the loop its branch-free body): count
        # it; the caller discards the results and lets the numpy path raise.
        nbad += 0 if _ok_black(f, k, t, rr, sg) else 1
        w = 1.0 if call[i] else -1.0
        s = sg * math.sqrt(t)
        fk = f / k
        v, _, _ = _undiscounted(f, k, s, w, _d1(math.log(fk), s), fk)
        res[i] = math.exp(-rr * t) * v
    return nbad


@numba.njit(**_JIT)  # type: ignore[misc]
def _black76_greeks(
    F: Any,
    K: Any,
    T: Any,
    r: Any,
    sig: Any,
    call: Any,
    res: Any,
) -> int:
    """``res`` is ``(5, n)``: delta, gamma, vega, theta, rho."""
    nbad = 0
    for i in prange(res.shape[1]):
        f = F[i]
        k = K[i]
        t = T[i]
        rr = r[i]
        sg = sig[i]
        nbad += 0 if _ok_black(f, k, t, rr, sg) else 1
        w = 1.0 if call[i] else -1.0
        sqt = math.sqrt(t)
        s = sg * sqt
        df = math.exp(-rr * t)
        fk = f / k
        d1 = _d1(math.log(fk), s)
        u, nd1, e1 = _undiscounted(f, k, s, w, d1, fk)
        v = df * u
        pdf = _INV_SQRT_2PI * e1
        res[0, i] = df * w * nd1
        if s > 0.0:
            res[1, i] = df * pdf / (f * s)
        else:
            res[1, i] = _INF if pdf > 0.0 else 0.0
        res[2, i] = df * f * pdf * sqt
        num = df * f * pdf * sg
        term = num / (2.0 * sqt) if t > 0.0 else (_INF if num > 0.0 else 0.0)
        res[3, i] = rr * v - term
        res[4, i] = -t * v
    return nbad


# --------------------------------------------------------------------------- implied vol


@numba.njit(error_model="numpy", cache=True)  # type: ignore[misc]
def _iv_one(p: float, f: float, k: float, t: float, rr: float, w: float) -> tuple[float, int]:
    """One element of ``options.implied_vol_black76_detail`` (same steps, same constants)."""
    df = math.exp(-rr * t)
    c = p / df
    wfk = w * (f - k)
    intrinsic = wfk if wfk > 0.0 else 0.0
    ow = -w if wfk > 0.0 else w
    tv = c - intrinsic
    upper = f if ow > 0.0 else k
    tol = 8.0 * _EPS * (abs(c) + ((f if f >= k else k) if intrinsic > 0.0 else 0.0))
    if tv < -tol:
        return math.nan, CODE_BELOW
    at_int = abs(tv) <= tol
    if not at_int and tv >= upper:
        return math.nan, CODE_ABOVE
    if t == 0.0:
        return math.nan, CODE_ZERO_EXPIRY
    if at_int:
        return 0.0, CODE_AT_INTRINSIC
    # Out-of-the-money option of time value tv: B(s) - max(ow (f - k), 0) = tv.
    fk = f / k
    xl = math.log(fk)
    owfk = ow * (f - k)
    intr = owfk if owfk > 0.0 else 0.0
    lo = 0.0
    hi = 1.0
    for _ in range(64):  # grow the bracket until B(hi) >= tv
        if _undiscounted_call(f, k, hi, ow, _d1(xl, hi), fk)[0] < tv:
            hi = 2.0 * hi
        else:
            break
    x = abs(xl)
    s = math.sqrt(2.0 * x) if x > 1e-8 else _SQRT_2PI * tv / math.sqrt(f * k)
    # np.clip(x0, lo, hi)
    if s < lo:
        s = lo
    if s > hi:
        s = hi
    log_tgt = math.log(tv)
    conv_tol = 1e-13 * (tv if tv > 1e-300 else 1e-300) + 1e-300
    done = False
    for _ in range(200):
        d1 = _d1(xl, s)
        u, _, e1 = _undiscounted_call(f, k, s, ow, d1, fk)
        fx = u - intr
        err = fx - tv
        if abs(err) <= conv_tol:
            done = True
        if err < 0.0:
            lo = s
        if err > 0.0:
            hi = s
        dfx = f * (_INV_SQRT_2PI * e1)
        x_new = s - (math.log(fx) - log_tgt) * fx / dfx
        if not (abs(x_new) < _INF) or x_new <= lo or x_new >= hi:
            x_new = 0.5 * (lo + hi)
        if (hi - lo) <= 4.0 * _EPS * (hi if hi > 1e-300 else 1e-300):
            done = True
        if done:
            break
        s = x_new
    if not done:
        return math.nan, CODE_NO_CONV
    return s / math.sqrt(t), CODE_OK


@numba.njit(**_JIT)  # type: ignore[misc]
def _implied_vol_black76(
    P: Any,
    F: Any,
    K: Any,
    T: Any,
    r: Any,
    call: Any,
    vol: Any,
    code: Any,
) -> int:
    nbad = 0
    for i in prange(vol.size):
        p = P[i]
        f = F[i]
        k = K[i]
        t = T[i]
        rr = r[i]
        if not _ok_black(f, k, t, rr, 0.0) or not abs(p) < _INF:
            nbad += 1
            vol[i] = math.nan
            code[i] = CODE_NO_CONV
            continue
        w = 1.0 if call[i] else -1.0
        v, c = _iv_one(p, f, k, t, rr, w)
        vol[i] = v
        code[i] = c
    return nbad


# --------------------------------------------------------------------------- Leisen-Reimer


@numba.njit(**_JIT)  # type: ignore[misc]
def _lr_tree(
    F: Any,
    K: Any,
    w: Any,
    p: Any,
    log_u: Any,
    log_d: Any,
    disc: Any,
    dt: Any,
    skip: Any,
    n: int,
    ex_times: Any,
    bermudan: bool,
    res: Any,
) -> None:
    """Backward induction of ``american._tree_numpy`` for each option not flagged in ``skip``."""
    for o in prange(res.size):
        if skip[o]:
            res[o] = 0.0
            continue
        f = F[o]
        kk = K[o]
        ww = w[o]
        pp = p[o]
        qq = 1.0 - pp
        dc = disc[o]
        lu = log_u[o]
        ld = log_d[o]
        step = dt[o]
        up = np.empty(n + 1)
        down = np.empty(n + 1)
        for j in range(n + 1):
            up[j] = math.exp(j * lu)
            down[j] = math.exp(j * ld)
        values = np.empty(n + 1)
        for j in range(n + 1):
            x = ww * (f * math.exp(j * lu + (n - j) * ld) - kk)
            values[j] = x if x > 0.0 else 0.0
        for i in range(n - 1, -1, -1):
            allowed = True
            if bermudan:
                allowed = False
                t_i = i * step
                for e in range(ex_times.size):
                    if abs(t_i - ex_times[e]) <= 0.5 * step:
                        allowed = True
                        break
            if allowed:
                for j in range(i + 1):
                    cont = dc * (pp * values[j + 1] + qq * values[j])
                    ex = ww * (f * (up[j] * down[i - j]) - kk)
                    if ex > cont:
                        cont = ex
                    # np.maximum(cont, max(ex, 0)): cont >= 0 already
                    values[j] = cont
            else:
                for j in range(i + 1):
                    values[j] = dc * (pp * values[j + 1] + qq * values[j])
        res[o] = values[0]


# --------------------------------------------------------------------------- risk book


#: Scenario rows per block of the risk-book kernel: its five row buffers stay in L1.
_REVAL_ROWS = 512


@numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy")  # type: ignore[misc]
def _reval_options(
    xT: Any,
    dv: Any,
    f0: Any,
    indptr: Any,
    indices: Any,
    wdata: Any,
    K: Any,
    sqt: Any,
    vol: Any,
    call: Any,
    qty: Any,
    v0: Any,
    grp: Any,
    outT: Any,
) -> int:
    """Option P&L of ``risk.book.revalue`` for a block of scenarios, added into ``outT``.

    ``xT`` is the ``(m, rows)`` transpose (at most ``_REVAL_ROWS`` rows: the row buffers stay
    in L1) of the scenario shifts and ``outT`` the ``(groups,
    rows)`` P&L.  Per cell (scenario ``r``, option ``i``), as the numpy path: ``F = f0 + w_i .
    x_r`` (the CSR row summed in stored order, as scipy does), ``s = max(vol + dv_r, 0)
    sqrt(T)``, Black-76 where ``F > 0``, ``K > 0`` and ``s > 0``, intrinsic elsewhere;
    ``outT[grp_i, r] += qty_i (V - V0_i)``.  Returns the number of cells with ``F <= 0``.

    Option by option over a block of rows, in passes over short row buffers: the arithmetic
    passes (forwards, ``d1``/``d2``, both normal cdfs with all three of Cody's pieces and the
    selects) have no branches and vectorise (AVX2: 4 cells per instruction); only ``log`` and
    ``exp`` stay scalar libm calls.  3x faster per core than one cell at a time with the same
    formulas, and bitwise equal to it.  Serial and ``nogil``: the caller's thread pool (or a
    Dask worker's threads) runs several blocks at once, no numba thread pool, no launch lock.
    """
    n = xT.shape[1]
    F = np.empty(n)
    S = np.empty(n)
    FK = np.empty(n)
    LX = np.empty(n)
    EM = np.empty(n)
    nbad = 0
    for i in range(f0.size):
        for r in range(n):
            F[r] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            wp = wdata[p]
            j = indices[p]
            for r in range(n):
                F[r] += wp * xT[j, r]
        fi = f0[i]
        k = K[i]
        sq = sqt[i]
        vo = vol[i]
        for r in range(n):
            f = fi + F[r]
            F[r] = f
            sg = vo + dv[r]
            s = (sg if sg > 0.0 else 0.0) * sq
            S[r] = s
            ok = (f > 0.0) & (k > 0.0) & (s > 0.0)
            FK[r] = f / k if ok else 1.0
            nbad += 1 if f <= 0.0 else 0
        for r in range(n):
            LX[r] = math.log(FK[r])
        for r in range(n):
            s = S[r]
            ss = s if s > 0.0 else 1.0
            d1 = LX[r] / ss + 0.5 * ss
            d2 = d1 - ss
            dm = d1 if abs(d1) <= abs(d2) else d2
            EM[r] = -0.5 * dm * dm
        for r in range(n):
            EM[r] = math.exp(EM[r])
        # As _undiscounted (floored at intrinsic), unrolled so the loop vectorises.
        w = 1.0 if call[i] else -1.0
        q = qty[i]
        vb = v0[i]
        g = grp[i]
        for r in range(n):
            f = F[r]
            s = S[r]
            ok = (f > 0.0) & (k > 0.0) & (s > 0.0)
            ss = s if ok else 1.0
            fk = FK[r]
            d1 = LX[r] / ss + 0.5 * ss
            d2 = d1 - ss
            first = abs(d1) <= abs(d2)
            em = EM[r]
            e1 = em if first else em / fk
            e2 = em * fk if first else em
            val = w * (f * _ncdf(w * d1, e1) - k * _ncdf(w * d2, e2))
            intrinsic = w * (f - k)
            intrinsic = intrinsic if intrinsic > 0.0 else 0.0
            val = val if val > intrinsic else intrinsic
            outT[g, r] += ((val if ok else intrinsic) - vb) * q
    return nbad


# --------------------------------------------------------------------------- typed wrappers


def black76_price(
    args: list[FloatArray], call: NDArray[np.bool_], n: int
) -> tuple[FloatArray, int]:
    """Black-76 prices and the number of invalid elements; ``args`` = ``[F, K, T, r, sigma]``."""
    res = np.empty(n)
    with _Launch(_CHUNK):
        nbad = _black76_price(*args, call, res)
    return res, int(nbad)


def black76_greeks(
    args: list[FloatArray], call: NDArray[np.bool_], n: int
) -> tuple[FloatArray, int]:
    """Black-76 greeks as a ``(5, n)`` array (delta, gamma, vega, theta, rho)."""
    res = np.empty((5, n))
    with _Launch(_CHUNK):
        nbad = _black76_greeks(*args, call, res)
    return res, int(nbad)


def implied_vol_black76(
    args: list[FloatArray], call: NDArray[np.bool_], n: int
) -> tuple[FloatArray, NDArray[np.int8], int]:
    """Implied vols, reason codes, number of invalid elements; ``args`` = price, F, K, T, r."""
    vol = np.empty(n)
    code = np.empty(n, dtype=np.int8)
    with _Launch(_CHUNK // 16):
        nbad = _implied_vol_black76(*args, call, vol, code)
    return vol, code, int(nbad)


def lr_tree(
    F: FloatArray,
    K: FloatArray,
    w: FloatArray,
    p: FloatArray,
    log_u: FloatArray,
    log_d: FloatArray,
    disc: FloatArray,
    dt: FloatArray,
    skip: NDArray[np.bool_],
    n: int,
    ex_times: FloatArray | None,
) -> FloatArray:
    """Leisen-Reimer tree values (1-D inputs of one length; 0 where ``skip``)."""
    res = np.empty(F.size)
    ex = np.zeros(0) if ex_times is None else np.ascontiguousarray(ex_times, dtype=np.float64)
    c = np.ascontiguousarray
    with _Launch(_CHUNK_TREE):
        _lr_tree(
            c(F),
            c(K),
            c(w),
            c(p),
            c(log_u),
            c(log_d),
            c(disc),
            c(dt),
            c(skip),
            n,
            ex,
            ex_times is not None,
            res,
        )
    return res


def reval_options(
    x: FloatArray,
    dv: FloatArray,
    opt: Sequence[Any],
    n_groups: int,
) -> tuple[FloatArray, int]:
    """Option P&L per scenario row and group, shape ``(rows, n_groups)``, and the count of
    cells whose scenario forward was ``<= 0``.

    ``x`` (rows, m) and ``dv`` (rows,) are float64; ``opt`` is the tuple
    ``(f0, indptr, indices, wdata, K, sqrt(T), vol, call, qty, V0, group)`` of contiguous
    per-option arrays (``indptr``/``indices`` int64, ``call`` bool, ``group`` int64) prepared
    once per call by ``risk.book.revalue``.  Releases the GIL; no lock (no numba thread pool).
    """
    rows = x.shape[0]
    out = np.empty((rows, n_groups))
    nbad = 0
    for a in range(0, rows, _REVAL_ROWS):
        b = min(a + _REVAL_ROWS, rows)
        # Contiguous blocks, each row buffer indexed from 0: offsets into the whole chunk
        # cost the kernel its vectorisation (2x slower, measured).
        outT = np.zeros((n_groups, b - a))
        xT = np.ascontiguousarray(x[a:b].T)
        nbad += _reval_options(xT, np.ascontiguousarray(dv[a:b]), *opt, outT)  # type: ignore[call-arg]
        out[a:b] = outT.T
    return out, int(nbad)


def warm_up() -> None:
    """Compile (first run) or load from the disk cache every kernel, on one-element inputs.

    Optional: a caller (e.g. a background thread at application start-up) can use it so the
    first large pricing call does not wait for the JIT (~10-16 s cold on 2 busy cores, ~0.6 s
    from the disk cache, most of it importing numba).
    """
    one = np.ones(1)
    call = np.ones(1, dtype=np.bool_)
    args = [one] * 5
    black76_price(args, call, 1)
    black76_greeks(args, call, 1)
    implied_vol_black76([one * 0.1, *args[:4]], call, 1)
    lr_tree(one, one, one, one * 0.5, one * 0.1, -one * 0.1, one, one, ~call, 3, None)
    idx = np.zeros(1, dtype=np.int64)
    grp = np.zeros(1, dtype=np.int64)
    opt = (one, np.arange(2, dtype=np.int64), idx, one, one, one, one, call, one, one, grp)
    reval_options(np.ones((1, 1)), one, opt, 1)
