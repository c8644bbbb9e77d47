"""Rupture criteria as data: what counts as a drop, and what counts as its repair.

Each criterion is a named entry under ``ruptures.criteria`` in ``params.yaml``. Four kinds
are known; every number of a rule is a setting, none lives in code:

``sd`` (after Gumz, Brähler, Geyer & Erices 2012)
    A drop of at least ``k`` standard deviations from the pre-drop level. The SD combines
    the client's own variability over sessions (``client``: the SD of the series) with the
    variability between clients (``between``: the SD of the client means), and the stricter
    (larger) of the available SDs is used (``combine: max``). Gumz et al. proposed
    reporting a 1-SD and a 2-SD version side by side. The exact formulas of the paper were
    not retrieved; this is the project's operationalisation of its description.
    ``pooled_within`` (the within-client SD pooled over all clients) may be listed instead.
``rci`` (Jacobson & Truax 1991, as the sudden-gains literature uses it)
    A drop larger than measurement error: ``z * SD_0 * sqrt(2) * sqrt(1 - r)``, with
    ``SD_0`` the SD of the clients' first observed scores (the pre-treatment SD of the
    original) and ``r`` the scale's reliability computed by the pipeline (Cronbach's alpha
    or omega, ``reliability``), or a value given under ``ruptures.reliability_override``.
``v_shape`` (the "V" of Stiles et al. 2004)
    A drop (threshold computed as for ``sd``) followed by a return to at least the pre-drop
    level within the repair window. Only such complete V shapes are episodes. Stiles et
    al. called their criterion preliminary, and later studies used other thresholds; the
    threshold here is this project's setting, not a number from that paper.
``dip`` (a sudden dip: the alliance analogue of a sudden loss, after the sudden-gains
template of Tang & DeRubeis 1999; the combination is this project's)
    The score of session ``s`` lies far below the sessions around it: the *dip contrast*
    ``mean(neighbours) - score(s)``, with up to ``before`` rated sessions before and up to
    ``after`` after ``s`` (at least one of each, same segment; ``m`` neighbours in all),
    must be at least ``z * SD * sqrt(1 + 1/m)``. Without a rupture that contrast has
    standard deviation ``SD * sqrt(1 + 1/m)``, so ``z`` is a one-sided critical value of
    a standard normal test, the analogue of the template's third criterion (the mean of
    three sessions before against three after). Optionally (``rci_z``) the drop from the
    pre-drop level (mean of the ``before`` sessions) must also be a reliable drop, as for
    ``rci`` (the template's first criterion). The template's second criterion (a change
    of 25% of the pre-change score) is not used: the alliance item mean has no natural
    zero (answers run from 1 to 5), so a percentage of it has no meaning. A drop at the
    last rated session of a segment has no sessions after it and cannot be a dip.
    ``SD`` is by default ``within_clean`` (below), a within-client SD that the episodes
    themselves do not inflate.

SD sources: ``client`` (the series' own SD), ``between`` (SD of the client means of the
rater x scale group), ``pooled_within`` (within-client SD pooled over the group's
clients) and ``within_clean`` (project's choice, in the spirit of robust change-point
work: the pooled within-client SD over the sessions that are *not* dips of the
criterion, found by iterating: start from ``pooled_within``, drop the sessions whose dip
contrast passes the criterion's threshold, recompute, until the SD no longer changes).
A client's own SD and the pooled within-client SD are inflated by the very drops a rule
looks for: one three-SD drop in ten sessions raises the SD of that series by about a
third, so a threshold in such SDs is larger than intended. ``within_clean`` is only
defined for ``dip`` criteria (the dips it leaves out are the criterion's own).

``repair`` says when an episode ends: ``pre_level`` (the score is back at or above the
pre-drop level) or ``below_threshold`` (the score is no longer a drop of the criterion's
size below the pre-drop level: the strain is over by the criterion's own yardstick).

References
----------
Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). *BMC Medical Research
Methodology, 12*, 10 (criteria for crisis-repair sequences in the working alliance).

Jacobson, N. S., & Truax, P. (1991). Clinical significance: a statistical approach to
defining meaningful change in psychotherapy research. *Journal of Consulting and Clinical
Psychology, 59*(1), 12-19.

Stiles, W. B., et al. (2004). Patterns of alliance development and the rupture-repair
hypothesis. *Journal of Counseling Psychology, 51*(1), 81-92.

Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in cognitive-
behavioral therapy for depression. *Journal of Consulting and Clinical Psychology, 67*(6),
894-904. (R equivalent of the template: package ``suddengains``, ``define_crit1_cutoff``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError
from pipeline.ruptures.windows import gather_sums, range_sums, segment_bounds

KINDS = ("sd", "rci", "v_shape", "dip")
"""Criterion kinds."""

SD_SOURCES = ("client", "between", "pooled_within", "within_clean")
"""Variability a ``sd``, ``v_shape`` or ``dip`` threshold may combine."""

SD_WORDS = {"client": "client's own SD", "between": "SD between clients",
            "pooled_within": "pooled within-client SD",
            "within_clean": "within-client SD without the dips",
            "baseline": "SD of first-session scores (RCI)"}
"""Readable names of the variability sources, as the ruptures report shows them."""


def sd_label(sd: str) -> str:
    """The ``sd`` column of ``thresholds.csv`` in words.

    ``client+between (max)`` -> ``larger of client's own SD and SD between clients``;
    ``baseline`` -> ``SD of first-session scores (RCI)``.
    """
    text = str(sd).strip()
    combine = ""
    if text.endswith(")") and " (" in text:
        text, combine = text[:-1].split(" (", 1)
    words = [SD_WORDS.get(part, part.replace("_", " ")) for part in text.split("+")]
    if len(words) == 1:
        return words[0]
    lead = {"max": "larger of ", "min": "smaller of "}.get(combine, f"{combine} of ")
    return lead + " and ".join(words)


REPAIRS = ("pre_level", "below_threshold")
"""When an episode counts as repaired."""

SCALES = ("total", "goal", "task", "bond")
"""Alliance scores a series can be built from (``total`` = mean of the subscales)."""

SERIES_KEYS = ("client_id", "rater", "scale")
"""Columns that identify one series."""

NO_VARIATION = "the scores do not vary (SD 0): no rupture threshold can be set"
"""Note of a series whose criterion SD is 0: a threshold of 0 would count any fall."""

ZERO_SD = 1e-9
"""An SD at or below this (score points) is 0: scores that do not vary give SDs of about
1e-16 by rounding (e.g. the total, a mean of subscale means); real ratings vary by far more."""


@dataclass(frozen=True)
class Criterion:
    """One named rupture criterion (an entry of ``ruptures.criteria``).

    Attributes
    ----------
    name
        Key in ``params.yaml`` (e.g. ``gumz_1sd``).
    label
        Short name for tables.
    kind
        One of :data:`KINDS`.
    k
        Multiple of the SD (``sd``, ``v_shape``).
    sd
        SD sources combined (``sd``, ``v_shape``, ``dip``).
    combine
        ``max`` (the stricter) or ``min``.
    z
        Critical value (``rci``: of the reliable change index; ``dip``: of the
        standardised dip contrast).
    reliability
        Column of the reliability table used (``alpha`` or ``omega_total``; ``rci``, and
        ``dip`` with ``rci_z``).
    before, after
        Rated sessions before and after the dip session in its contrast (``dip``).
    rci_z
        ``dip`` only: if set, the drop from the pre-drop level must also exceed the
        reliable-change threshold with this critical value.
    repair
        One of :data:`REPAIRS`.
    plain
        One sentence in plain words for the report.
    """

    name: str
    label: str
    kind: str
    repair: str
    k: float = 1.0
    sd: tuple[str, ...] = ("client", "between")
    combine: str = "max"
    z: float = 1.96
    reliability: str = "alpha"
    before: int = 3
    after: int = 3
    rci_z: float | None = None
    plain: str = ""

    @property
    def repaired_only(self) -> bool:
        """Whether only repaired episodes count (the V shape)."""
        return self.kind == "v_shape"


@dataclass(frozen=True)
class Rules:
    """Rules shared by every criterion (``ruptures.rules``).

    Attributes
    ----------
    max_gap
        Missed sessions bridged: two observed sessions further apart than ``max_gap + 1``
        session numbers are in different segments; no drop is read across the gap, and
        an episode open at the gap is censored there.
    pre_sessions
        The pre-drop level is the mean of up to this many previous observed sessions of
        the same segment.
    window
        A repair counts when it comes at most ``window`` session numbers after the
        rupture session. An episode with an observed session beyond the window and no
        repair is unrepaired; one whose series (or segment) ends earlier is censored.
    min_sessions_client_sd
        Observed sessions needed before a client's own SD is used.
    """

    max_gap: int = 2
    pre_sessions: int = 1
    window: int = 3
    min_sessions_client_sd: int = 3


def _setting(entry: Mapping[str, Any], key: str, where: str, kind: type, default: Any) -> Any:
    value = entry.get(key, default)
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"params.yaml: {where}.{key} must be a {kind.__name__}, not "
                            f"{value!r}. Correct it under ruptures: in params.yaml.") from exc


def load_rules(cfg: Mapping[str, Any]) -> Rules:
    """Read ``ruptures.rules``; unknown keys and negative values are errors."""
    entry = dict(cfg.get("rules") or {})
    unknown = set(entry) - set(Rules.__dataclass_fields__)
    if unknown:
        raise SettingsError(f"params.yaml: ruptures.rules has unknown keys {sorted(unknown)}; "
                            f"known: {sorted(Rules.__dataclass_fields__)}.")
    rules = Rules(**{k: _setting(entry, k, "ruptures.rules", int, getattr(Rules(), k))
                     for k in Rules.__dataclass_fields__})
    if rules.max_gap < 0 or rules.pre_sessions < 1 or rules.window < 1:
        raise SettingsError("params.yaml: ruptures.rules needs max_gap >= 0, pre_sessions >= 1 "
                            "and window >= 1.")
    return rules


def load_criteria(cfg: Mapping[str, Any]) -> tuple[Criterion, ...]:
    """Read ``ruptures.criteria`` into :class:`Criterion` objects, checking every key.

    Raises
    ------
    SettingsError
        Naming the criterion and key, for an unknown kind, SD source, repair rule or key.
    """
    entries = cfg.get("criteria") or {}
    if not entries:
        raise SettingsError("params.yaml: ruptures.criteria is empty; name at least one "
                            "criterion (see pipeline/ruptures/criteria.py).")
    known = set(Criterion.__dataclass_fields__) - {"name"}
    out = []
    for name, raw in entries.items():
        entry = dict(raw or {})
        where = f"ruptures.criteria.{name}"
        unknown = set(entry) - known
        if unknown:
            raise SettingsError(f"params.yaml: {where} has unknown keys {sorted(unknown)}; "
                                f"known: {sorted(known)}.")
        kind = str(entry.get("kind", ""))
        if kind not in KINDS:
            raise SettingsError(f"params.yaml: {where}.kind must be one of {KINDS}, not "
                                f"{kind!r}.")
        repair = str(entry.get("repair", "pre_level" if kind == "v_shape" else
                               "below_threshold"))
        if repair not in REPAIRS:
            raise SettingsError(f"params.yaml: {where}.repair must be one of {REPAIRS}.")
        default_sd = ("within_clean",) if kind == "dip" else ("client", "between")
        sources = tuple(str(s) for s in entry.get("sd", default_sd))
        bad = [s for s in sources if s not in SD_SOURCES]
        if bad or not sources:
            raise SettingsError(f"params.yaml: {where}.sd lists unknown sources {bad}; use "
                                f"some of {SD_SOURCES}.")
        if "within_clean" in sources and kind != "dip":
            raise SettingsError(f"params.yaml: {where}.sd: within_clean is defined for dip "
                                "criteria only (the dips it leaves out are the criterion's "
                                "own); use client, between or pooled_within.")
        combine = str(entry.get("combine", "max"))
        if combine not in ("max", "min"):
            raise SettingsError(f"params.yaml: {where}.combine must be max or min.")
        reliability = str(entry.get("reliability", "alpha"))
        if reliability not in ("alpha", "omega_total"):
            raise SettingsError(f"params.yaml: {where}.reliability must be alpha or "
                                "omega_total.")
        k = _setting(entry, "k", where, float, 1.0)
        z = _setting(entry, "z", where, float, 1.96)
        if k <= 0 or z <= 0:
            raise SettingsError(f"params.yaml: {where}: k and z must be positive.")
        before = _setting(entry, "before", where, int, 3)
        after = _setting(entry, "after", where, int, 3)
        if before < 1 or after < 1:
            raise SettingsError(f"params.yaml: {where}: before and after must be at least "
                                "1 (a dip needs rated sessions on both sides).")
        rci_raw = entry.get("rci_z")
        rci_z = None if rci_raw is None else _setting(entry, "rci_z", where, float, None)
        if rci_z is not None and rci_z <= 0:
            raise SettingsError(f"params.yaml: {where}.rci_z must be positive or absent.")
        out.append(Criterion(
            name=str(name), label=str(entry.get("label", name)), kind=kind, repair=repair,
            k=k, sd=sources, combine=combine, z=z, reliability=reliability,
            before=before, after=after, rci_z=rci_z,
            plain=" ".join(str(entry.get("plain", "")).split()),
        ))
    return tuple(out)


def series_sd(series: pd.DataFrame, min_sessions: int) -> pd.DataFrame:
    """Variability of each series and of its rater x scale group.

    Parameters
    ----------
    series
        Long scores: ``client_id, rater, scale, session, score`` (no missing scores).
    min_sessions
        Observed sessions needed for the client's own SD.

    Returns
    -------
    pandas.DataFrame
        One row per series: ``client_id, rater, scale, n_sessions, client`` (its SD,
        ddof = 1; NaN below ``min_sessions``), ``between`` (SD of the client means of the
        rater x scale group), ``pooled_within`` (within-client SD pooled over the group's
        clients with two or more sessions) and ``baseline`` (SD of the clients' first
        observed scores in the group).
    """
    keys = list(SERIES_KEYS)
    series = series.reset_index(drop=True)  # row labels = positions (for idxmin below)
    grouped = series.groupby(keys, sort=True)  # one grouping for every per-series value
    per = grouped["score"].agg(n_sessions="size", mean="mean", sd="std").reset_index()
    # The score at the series' first observed session (sessions are unique in a series).
    per["first"] = series["score"].loc[grouped["session"].idxmin().to_numpy()].to_numpy()
    per["client"] = per["sd"].where(per["n_sessions"] >= min_sessions)
    dev2 = series["score"] - grouped["score"].transform("mean")
    ss = (dev2**2).groupby([series["rater"], series["scale"]]).sum()
    dof = (per["n_sessions"] - 1).groupby([per["rater"], per["scale"]]).sum()
    group = pd.DataFrame({
        "between": per.groupby(["rater", "scale"])["mean"].std(),
        "pooled_within": np.sqrt(ss / dof.where(dof > 0)),
        "baseline": per.groupby(["rater", "scale"])["first"].std(),
    }).reset_index()
    per = per.merge(group, on=["rater", "scale"], how="left")
    return per[[*keys, "n_sessions", "client", "between", "pooled_within", "baseline"]]


def thresholds(sds: pd.DataFrame, criterion: Criterion,
               reliability: Mapping[str, float]) -> pd.DataFrame:
    """The drop (in score points) each series must show to count under ``criterion``.

    Parameters
    ----------
    sds
        Output of :func:`series_sd`.
    criterion
        The criterion.
    reliability
        Scale -> reliability (for ``rci``); a scale missing here has no RCI threshold.

    Returns
    -------
    pandas.DataFrame
        ``client_id, rater, scale, threshold, min_drop, note``; ``threshold`` is NaN (and
        ``note`` says why) when the criterion cannot be applied to the series. For
        ``dip`` criteria ``threshold`` is ``z * SD`` (the dip contrast must reach it times
        ``sqrt(1 + 1/m)``) and ``min_drop`` the reliable-drop threshold (0 without
        ``rci_z``); other kinds have ``min_drop`` 0. A ``within_clean`` SD must be a column
        of ``sds`` (:func:`clean_within_sd`).
    """
    out = sds[list(SERIES_KEYS)].copy()
    out["min_drop"] = 0.0
    if criterion.kind == "rci":
        out["threshold"], out["note"] = _rci(sds, criterion.z, reliability)
        return out
    missing = [s for s in criterion.sd if s not in sds.columns]
    if missing:
        raise ValueError(f"criterion {criterion.name}: SD columns {missing} not computed")
    block = sds[list(criterion.sd)].astype(float)
    sd = block.max(axis=1) if criterion.combine == "max" else block.min(axis=1)
    mult = criterion.z if criterion.kind == "dip" else criterion.k
    # An SD of 0 (the scores do not vary) would make any fall, however small, a rupture
    # (and a rise its repair): no threshold, and the note says why.
    flat = sd <= ZERO_SD
    out["threshold"] = (mult * sd).where(~flat)
    out["note"] = np.where(sd.isna(), "no SD estimable (too few sessions or clients)",
                           np.where(flat, NO_VARIATION, ""))
    if criterion.kind == "dip" and criterion.rci_z is not None:
        rci, note = _rci(sds, criterion.rci_z, reliability)
        out["min_drop"] = rci
        out["threshold"] = out["threshold"].where(rci.notna())
        out["note"] = np.where(out["note"] != "", out["note"], note)
    return out


def _rci(sds: pd.DataFrame, z: float,
         reliability: Mapping[str, float]) -> tuple[pd.Series, np.ndarray]:
    """Reliable-drop threshold ``z * SD_0 * sqrt(2) * sqrt(1 - r)`` per series, and notes."""
    rel = np.array([reliability.get(str(s), np.nan) for s in sds["scale"]], dtype=float)
    baseline = sds["baseline"].to_numpy(dtype=float)
    thr = z * baseline * np.sqrt(2.0) * np.sqrt(1.0 - np.minimum(rel, 1.0))
    # Only a threshold that is defined: scores that do not vary, or a reliability of 1
    # (every item answered alike: no measurement error), would give a threshold of 0.
    flat = baseline <= ZERO_SD
    perfect = rel >= 1.0 - ZERO_SD
    thr = np.where(flat | perfect, np.nan, thr)
    note = np.select(
        [flat, np.isnan(rel), perfect, np.isnan(baseline)],
        [NO_VARIATION,
         "reliability unknown (no item data, or items without variance): no RCI",
         "reliability 1 (the items always agree, so no measurement error to judge a drop "
         "by): no reliable-drop threshold can be set",
         "baseline SD not estimable"], "")
    return pd.Series(thr, index=sds.index, dtype=float), note


def dip_contrasts(sessions: np.ndarray, scores: np.ndarray, max_gap: int, before: int,
                  after: int, series_id: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-drop level, dip contrast and neighbour count at each observed session.

    Parameters
    ----------
    sessions, scores
        One series (increasing sessions, no missing scores), or many series one after
        the other (with ``series_id``).
    max_gap
        Missed sessions bridged (``ruptures.rules.max_gap``); neighbours come from the
        same segment only.
    before, after
        Neighbours taken on each side (at most).
    series_id
        Series of each row when several series are given (rows of a series adjacent,
        sessions increasing within it); ``None`` for one series.

    Returns
    -------
    pre, contrast, m : numpy.ndarray
        ``pre``: mean of up to ``before`` previous sessions; ``contrast``: mean of the up to
        ``before + after`` neighbours (the previous ones first) minus the score; ``m``:
        number of neighbours. NaN (``m`` 0) where a session lacks a neighbour on either
        side.
    """
    s = np.asarray(sessions, dtype=int)
    x = np.asarray(scores, dtype=float)
    n = len(x)
    pre = np.full(n, np.nan)
    contrast = np.full(n, np.nan)
    m = np.zeros(n, dtype=int)
    if n == 0:
        return pre, contrast, m
    sid = np.zeros(n, dtype=np.int64) if series_id is None else np.asarray(series_id)
    start, end = segment_bounds(sid, s, max_gap)
    pos = np.arange(n)
    lo = np.maximum(start, pos - before)
    hi = np.minimum(end, pos + 1 + after)
    ok = (lo < pos) & (hi > pos + 1)
    at = np.flatnonzero(ok)
    offsets = np.concatenate([np.arange(-before, 0), np.arange(1, after + 1)])
    index = at[:, None] + offsets
    valid = (index >= lo[at, None]) & (index < hi[at, None])
    index = np.clip(index, 0, n - 1)
    m[at] = valid.sum(axis=1)
    pre[at] = range_sums(x, lo[at], at) / (at - lo[at])
    contrast[at] = gather_sums(x, index, valid) / m[at] - x[at]
    return pre, contrast, m


def clean_within_sd(series: pd.DataFrame, z: float, before: int, after: int, max_gap: int,
                    max_iter: int = 100) -> pd.DataFrame:
    """Pooled within-client SD outside the dips of a criterion (``within_clean``).

    Starts from the pooled within-client SD of each rater x scale group; then, until the
    SD changes by less than 1e-9 (or ``max_iter`` rounds), leaves out every session whose
    dip contrast (:func:`dip_contrasts`) reaches ``z * SD * sqrt(1 + 1/m)`` and recomputes
    the pooled SD (deviations from each client's mean of the sessions kept, ddof 1 per
    client; clients with fewer than two sessions kept add nothing). This is a trimmed,
    leave-the-episodes-out estimate in the spirit of robust change-point detection;
    leaving out the noise dips that pass the threshold too makes it a few per cent smaller
    than the SD of data without ruptures (measured in NOTES.md). A pooled SD of 0 (no
    score varies within a client; up to :data:`ZERO_SD`) is returned as it is: nothing is
    left out.

    Every client of a group is handled at once; the sums are added client by client in
    ``client_id`` order, as one would by hand, so the result does not depend on how the
    work is split.

    Returns
    -------
    pandas.DataFrame
        ``rater, scale, within_clean``.
    """
    rows = []
    data = series.sort_values(["rater", "scale", "client_id", "session"], kind="mergesort")
    for (rater, scale), grp in data.groupby(["rater", "scale"], sort=True):
        sid = grp.groupby("client_id", sort=True).ngroup().to_numpy()
        x = grp["score"].to_numpy(dtype=float)
        _pre, contrast, m = dip_contrasts(grp["session"].to_numpy(), x, max_gap, before,
                                          after, sid)
        n_clients = int(sid.max()) + 1 if len(sid) else 0
        sd = np.nan
        for _ in range(max_iter):
            keep = np.ones(len(x), dtype=bool)
            if np.isfinite(sd):
                with np.errstate(invalid="ignore", divide="ignore"):
                    keep &= ~(contrast >= z * sd * np.sqrt(1.0 + 1.0 / m))
            kept = np.bincount(sid[keep], minlength=n_clients)
            stops = np.cumsum(kept)
            starts = stops - kept
            xk = x[keep]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = range_sums(xk, starts, stops) / kept
            dev2 = (xk - np.repeat(mean, kept)) ** 2
            used = kept >= 2
            per_client = range_sums(dev2, starts[used], stops[used])
            # Added one client after another (not numpy's pairwise order).
            ss = float(np.add.accumulate(per_client)[-1]) if len(per_client) else 0.0
            dof = int((kept[used] - 1).sum())
            new = float(np.sqrt(ss / dof)) if dof > 0 else np.nan
            # new ~ 0: the scores do not vary within clients; nothing to leave out
            # (a threshold of 0 would leave out every session)
            if (not np.isfinite(new) or new <= ZERO_SD
                    or (np.isfinite(sd) and abs(new - sd) < 1e-9)):
                sd = new
                break
            sd = new
        rows.append({"rater": rater, "scale": scale, "within_clean": sd})
    return pd.DataFrame(rows, columns=["rater", "scale", "within_clean"])


def scale_reliability(alliance: pd.DataFrame, inst: Any, which: str = "alpha",
                      override: Mapping[str, float] | None = None) -> dict[str, float]:
    """Reliability of each alliance score for the RCI threshold, computed by the pipeline.

    Parameters
    ----------
    alliance
        Validated alliance rows (item columns); pre-scored data have no items.
    inst
        The alliance :class:`~pipeline.instruments.Instrument`.
    which
        ``alpha`` (Cronbach) or ``omega_total`` (McDonald), as
        :func:`pipeline.psychometrics.reliability` computes them over all rows.
    override
        Scale -> reliability given by the user (``ruptures.reliability_override``), e.g.
        a published test-retest value; it takes precedence.

    Returns
    -------
    dict
        Scale (``goal``, ``task``, ``bond``, ``total``) -> reliability. ``total`` is the
        coefficient of all items together (the total is the mean of equal-length
        subscales). Scales whose items are absent are left out, unless overridden.
    """
    from pipeline.psychometrics import cronbach_alpha, omega_total, reliability
    from pipeline.score import keyed_items

    out: dict[str, float] = {}
    if set(inst.item_columns) <= set(alliance.columns):
        rel = reliability(alliance, inst, omega=which == "omega_total")
        for rec in rel.itertuples(index=False):
            value = getattr(rec, which)
            if pd.notna(value):
                out[str(rec.scale)] = float(value)
        items = keyed_items(alliance, inst).dropna()
        if len(items) > inst.n_items:
            x = items.to_numpy(dtype=float)
            # Only a defined coefficient: alpha is NaN when the total does not vary; omega
            # (item correlations) needs every item to vary. The RCI note says why.
            if which == "alpha":
                total = cronbach_alpha(x)[0]
            else:
                total = omega_total(x)[0] if np.all(x.std(axis=0) > 0) else np.nan
            if np.isfinite(total):
                out["total"] = total
    for scale, value in (override or {}).items():
        if str(scale) not in SCALES or not 0 < float(value) < 1:
            raise SettingsError(f"params.yaml: ruptures.reliability_override.{scale} must "
                                f"name one of {SCALES} with a value between 0 and 1.")
        out[str(scale)] = float(value)
    return out
