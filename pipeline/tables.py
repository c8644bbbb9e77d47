"""APA-style publication tables from the results files, as HTML, LaTeX and Markdown.

Built with pandas' ``Styler`` (HTML, LaTeX with booktabs) and ``tabulate`` (Markdown via
``DataFrame.to_markdown``), so no table markup is written by hand here. Numbers follow
APA 7: two decimals, intervals in brackets, p-values without a leading zero and
``< .001`` below one in a thousand, degrees of freedom of a likelihood-ratio test as
integers, yes/no instead of True/False. This module is the one place of the table style:
the published tables (``publish`` stage) and the tables inside the reports (``styled``
over the functions below) use the same labels, decimals and p-format. How many decimals
each kind of number gets, and the rule that gives an estimate with a narrow interval more
(:func:`interval_decimals`), are data: ``pipeline/table_style.yaml``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from pipeline.labels import term_label
from pipeline.outputs import atomic_open

if TYPE_CHECKING:
    from pipeline.models.spec import ModelPlan


STYLE = Path(__file__).with_name("table_style.yaml")


@functools.cache
def _style() -> dict[str, Any]:
    from pipeline import yamlfile

    with STYLE.open(encoding="utf-8") as fh:
        return dict(yamlfile.safe_load(fh))


def decimals(kind: str = "default") -> int:
    """Decimals of a kind of number (``default``, ``variance``, ``points``, ``percent``,
    ...), as ``pipeline/table_style.yaml`` sets them."""
    return int(_style()["decimals"][kind])


def format_p(p: float) -> str:
    """APA p-value: ``< .001``, else three decimals without the leading zero (the style's
    ``p_value`` decimals and ``no_leading_zero``; the floor is one unit of the last
    decimal)."""
    if p is None or not np.isfinite(p):
        return ""
    digits = decimals("p_value")
    if p < 10.0 ** -digits:
        return "< " + apa_zero(format_num(10.0 ** -digits, digits), "p_value")
    return apa_zero(format_num(p, digits), "p_value")


def interval_decimals(low: float, high: float, kind: str = "default") -> int:
    """Decimals of an estimate with the interval ``[low, high]`` (and of its SE and bounds).

    The fewest from ``decimals(kind)`` up to the style's ``interval.max`` at which the
    interval spans at least ``interval.min_units`` units of the last decimal
    (``pipeline/table_style.yaml``); ``decimals(kind)`` when a bound is missing.
    E.g. [−0.001, 0.017] gets 3 decimals, [0.19, 0.25] 2.
    """
    rule, digits = _style()["interval"], decimals(kind)
    try:
        width = float(high) - float(low)
    except (TypeError, ValueError):
        return digits
    if not np.isfinite(width):
        return digits
    # units of the last decimal, rounded off binary noise (0.12 - 0.10 is 1.999...e-2)
    while digits < int(rule["max"]) and round(width * 10.0 ** digits, 9) < rule["min_units"]:
        digits += 1
    return digits


def format_num(x: float, digits: int | None = None) -> str:
    """Fixed decimals with a true minus sign; blank for missing values.

    ``digits`` default: ``decimals("default")`` (``pipeline/table_style.yaml``). A number
    that rounds to zero is ``0.00``, never ``−0.00`` (e.g. a bound of −0.004).
    """
    if x is None or not np.isfinite(x):
        return ""
    if digits is None:
        digits = decimals()
    text = f"{x:.{digits}f}"
    if not text.startswith("-"):
        return text
    return text[1:] if float(text) == 0 else "\u2212" + text[1:]


def bounded(kind: str) -> bool:
    """Whether numbers of ``kind`` cannot exceed 1 in absolute value and are printed
    without a leading zero (APA 7: ``r = .45``): the style's ``no_leading_zero`` list."""
    return kind in _style().get("no_leading_zero", ())


def apa_zero(text: str, kind: str) -> str:
    """``text`` (a number as :func:`format_num` prints it) without its leading zero when
    ``kind`` is :func:`bounded`: ``0.45`` -> ``.45``, ``−0.05`` -> ``−.05``; other kinds,
    and numbers of 1 or more, as they are."""
    if not bounded(kind):
        return text
    for sign in ("", "+", "\u2212"):
        if text.startswith(sign + "0."):
            return sign + text[len(sign) + 1:]
    return text


def number(x: float, kind: str = "default", signed: bool = False) -> str:
    """A number of a kind at the decimals ``pipeline/table_style.yaml`` gives the kind
    (:func:`format_num`: true minus sign, blank when missing), without a leading zero when
    the style says the kind cannot exceed 1 (:func:`bounded`: ``number(0.45,
    "correlation")`` is ``.45``); ``signed`` puts a plus sign before a number that is not
    negative: ``number(0.123, "points", signed=True)`` is ``+0.12``. Reports print every
    number through this function (or the ones below), so that the style file alone
    decides decimals and leading zeros."""
    text = apa_zero(format_num(x, decimals(kind)), kind)
    return "+" + text if signed and text and not text.startswith("\u2212") else text


def given(x: float, kind: str = "default") -> str:
    """A setting echoed as the analyst gave it (``{x:g}``: no rounding, no added
    decimals), without a leading zero when the kind cannot exceed 1 (:func:`bounded`):
    ``given(0.05, "p_value")`` is ``.05`` (alpha), ``given(0.8, "power")`` ``.8``."""
    if x is None or not np.isfinite(x):
        return ""
    text = f"{x:g}"
    return apa_zero("\u2212" + text[1:] if text.startswith("-") else text, kind)


def percent(x: float, kind: str = "percent", scaled: bool = False) -> str:
    """A share as a percentage at its kind's decimals: ``percent(0.254)`` is ``25%``;
    ``scaled``: ``x`` is a percentage already (``percent(12.34, "percent_table",
    scaled=True)`` is ``12.3%``). Blank when missing."""
    text = format_num(x if scaled else 100 * x, decimals(kind))
    return text + "%" if text else ""


def format_interval(low: float, high: float, digits: int | None = None,
                    kind: str = "default") -> str:
    """An interval as APA writes it: ``[0.19, 0.25]`` (bounds by :func:`format_num`;
    ``[.19, .25]`` for a :func:`bounded` ``kind``)."""
    bounds = (apa_zero(format_num(v, digits), kind) for v in (low, high))
    return "[{}, {}]".format(*bounds)


def with_interval(estimate: float, low: float, high: float,
                  kind: str = "default") -> tuple[str, str, int]:
    """An estimate and its interval at the decimals :func:`interval_decimals` gives them:
    ``("0.008", "[−0.001, 0.017]", 3)`` (the digits, for its SE or a related range);
    without leading zeros for a :func:`bounded` ``kind`` (``(".183", "[.094, .277]",
    3)``)."""
    digits = interval_decimals(low, high, kind)
    return (apa_zero(format_num(estimate, digits), kind),
            format_interval(low, high, digits, kind), digits)


def format_r(x: float, digits: int | None = None) -> str:
    """A correlation or reliability as the style prints the ``correlation`` kind:
    ``.86``, ``−.05`` (``digits`` default: the kind's decimals)."""
    return apa_zero(format_num(x, decimals("correlation") if digits is None else digits),
                    "correlation")


def format_int(x: float) -> str:
    """An integer count or df with thousands separators; blank for missing values."""
    if x is None or not np.isfinite(x):
        return ""
    return f"{round(float(x)):,}"


def format_df(x: float) -> str:
    """Degrees of freedom: integers as integers, Satterthwaite df at the style's ``df``
    decimals (one)."""
    if x is None or not np.isfinite(x):
        return ""
    return format_int(x) if float(x).is_integer() else number(x, "df")


def yes_no(flag: object) -> str:
    """``yes``/``no`` for a flag read from a CSV (bool or the strings True/False)."""
    if isinstance(flag, str):
        return "yes" if flag.strip().lower() in ("true", "1", "yes") else "no"
    return "yes" if bool(flag) else "no"


def model_label(name: str, plan: ModelPlan | None = None) -> str:
    """A model's name for readers: its ``title`` in ``pipeline/models.yaml``.

    ``primary`` -> ``Primary model``; the ``Sensitivity:`` prefix of the sensitivity models
    is dropped (they are shown beside the primary model). ``plan`` is a loaded
    :class:`pipeline.models.spec.ModelPlan` (default: the project's ``models.yaml``).
    """
    if name == "primary":
        return "Primary model"
    if plan is None:
        from pipeline.models.spec import load_specs

        plan = load_specs()
    title = str(plan.get(name).title).removeprefix("Sensitivity: ")
    return title[:1].upper() + title[1:]


def model_labels(names: Iterable[object]) -> list[str]:
    """:func:`model_label` of each name, for the Model column of a table of many models.

    A name that ``pipeline/models.yaml`` does not have (results written by another plan)
    is shown as it is rather than stopping the table.
    """
    from pipeline.errors import SpecError
    from pipeline.models.spec import load_specs

    plan = load_specs()
    out = []
    for name in names:
        try:
            out.append(model_label(str(name), plan))
        except SpecError:
            out.append(str(name))
    return out


def coefficient_table(coefs: pd.DataFrame, models: list[str] | None = None,
                      conf_level: float = 0.95) -> pd.DataFrame:
    """APA table of fixed effects: Model, Term, b, SE, CI, p (and p Holm when present)."""
    rows = coefs if models is None else coefs[coefs["model"].isin(models)]
    ci = f"{round(conf_level * 100)}% CI"
    # each row's b, SE and interval at the row's decimals (interval_decimals)
    digits = [interval_decimals(lo, hi)
              for lo, hi in zip(rows["conf_low"], rows["conf_high"], strict=True)]
    table = pd.DataFrame({
        "Model": model_labels(rows["model"]),
        "Term": [term_label(t) for t in rows["term"]],
        "b": [format_num(v, d) for v, d in zip(rows["estimate"], digits, strict=True)],
        "SE": [format_num(v, d) for v, d in zip(rows["std_error"], digits, strict=True)],
        ci: [format_interval(lo, hi, d)
             for lo, hi, d in zip(rows["conf_low"], rows["conf_high"], digits, strict=True)],
        "p": [format_p(v) for v in rows["p_value"]],
    })
    if "df" in rows.columns and np.isfinite(rows["df"].to_numpy(dtype=float)).any():
        table.insert(list(table.columns).index("p"), "df", [format_df(v) for v in rows["df"]])
    if "p_holm" in rows.columns and rows["p_holm"].notna().any():
        table["p (Holm)"] = [format_p(v) for v in rows["p_holm"]]
    if models is not None and len(models) == 1:
        table = table.drop(columns="Model")
    return table.reset_index(drop=True)


#: LaTeX for the characters the APA tables can hold that LaTeX reads as commands (``%``
#: starts a comment: a "95% CI" header cut its row short) or that pdfLaTeX's default UTF-8
#: input does not know. Written here: pandas' own LaTeX escaping is private
#: (``Styler.format(escape="latex")`` also reformats every number) and misses the symbols.
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
          "\u2212": "$-$", "\u00d7": r"$\times$", "\u00b1": r"$\pm$",
          "\u00b2": r"\textsuperscript{2}", "\u2014": "---", "\u2013": "--",
          "\u03b1": r"$\alpha$", "\u2264": r"$\leq$", "\u2265": r"$\geq$"}


def latex_text(value: object) -> str:
    """``value`` as LaTeX text: special characters escaped, symbols as LaTeX commands."""
    return "".join(_LATEX.get(ch, ch) for ch in str(value))


def _cells(table: pd.DataFrame, escape: Any) -> pd.DataFrame:
    """A copy with every text cell and column label passed through ``escape``."""
    out = table.map(lambda v: escape(v) if isinstance(v, str) else v)
    out.columns = [escape(str(c)) for c in table.columns]
    return out


def write_table(table: pd.DataFrame, outdir: str | Path, name: str, title: str,
                note: str) -> list[Path]:
    """Write ``name``.html, .tex and .md into ``outdir`` atomically.

    Cell text and column labels (which may hold a user's covariate levels) are escaped for
    each format: HTML entities, LaTeX specials (:func:`latex_text`), Markdown's ``|``.
    ``title`` and ``note`` are the project's own text (the note may hold HTML emphasis).
    """
    import html as html_lib

    out = Path(outdir)
    styler = (_cells(table, lambda s: html_lib.escape(s, quote=False)).style
              .hide(axis="index").set_uuid(name).set_caption(title))
    html = styler.to_html(table_attributes='class="apa-table"', exclude_styles=True)
    html += f'<p class="apa-note"><em>Note.</em> {note}</p>\n'
    latex = (_cells(table, latex_text).style.hide(axis="index")
             .set_caption(latex_text(title))
             .to_latex(hrules=True, position="htbp", label=f"tab:{name}"))
    latex += f"% Note. {' '.join(note.split())}\n"
    body = _cells(table, lambda s: s.replace("|", "\\|")).to_markdown(
        index=False, disable_numparse=True)
    markdown = f"**{title}**\n\n{body}\n\n*Note.* {note}\n"
    paths = []
    for suffix, text in (("html", html), ("tex", latex), ("md", markdown)):
        path = out / f"{name}.{suffix}"
        with atomic_open(path) as fh:
            fh.write(text)
        paths.append(path)
    return paths


def formatted(frame: pd.DataFrame, digits: int | None = None,
              decimals: dict[str, int] | None = None,
              p_values: tuple[str, ...] = (), blank: str = "\u2013",
              kinds: dict[str, str] | None = None, kind: str = "default") -> pd.DataFrame:
    """Every cell of a report table as text, in this module's style.

    Numeric columns whose values are all whole numbers are counts (:func:`format_int`);
    the columns in ``p_values`` are p-values (:func:`format_p`); the other numeric columns
    get the decimals of their kind in ``pipeline/table_style.yaml`` (``kinds[column]``,
    else ``kind``), or ``decimals[column]`` or ``digits`` decimals where a caller gives
    numbers (:func:`format_num`, true minus sign), and no leading zero when their kind is
    :func:`bounded`. A column named in ``kinds`` is never
    taken for counts. A missing number (a suppressed cell) is ``blank``; missing text is
    empty. Reports pass kinds, never numbers.
    """
    named = [*(kinds or {}), *(decimals or {}), *p_values]
    absent = [c for c in named if c not in frame.columns]
    if absent:   # a kind for a column renamed before the call was silently ignored
        raise ValueError(f"formatted: no column {absent} in {list(frame.columns)}")
    places = {column: int(_style()["decimals"][k]) for column, k in (kinds or {}).items()}
    decimals = {**places, **(decimals or {})}
    # the kind whose leading-zero rule a column follows (bounded(); APA 7)
    kind_of = {**dict.fromkeys(frame.columns, kind if digits is None else "default"),
               **(kinds or {})}
    if digits is None:
        digits = int(_style()["decimals"][kind])
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if column in p_values:
            numbers = pd.to_numeric(values, errors="coerce")
            out[column] = [blank if pd.isna(v) else format_p(v) for v in numbers]
        elif pd.api.types.is_bool_dtype(values):
            out[column] = [yes_no(v) for v in values]
        elif pd.api.types.is_numeric_dtype(values):
            numbers = values.astype(float)
            whole = column not in decimals and bool(numbers.dropna().mod(1).eq(0).all())
            out[column] = [blank if pd.isna(v) else format_int(v) if whole
                           else apa_zero(format_num(v, decimals.get(column, digits)),
                                         kind_of[column]) for v in numbers]
        else:
            out[column] = ["" if pd.isna(v) else str(v) for v in values]
    return out.reset_index(drop=True)


def styled(frame: pd.DataFrame, hide_index: bool = True) -> Styler:
    """A ``Styler`` for reports whose HTML id does not change between runs.

    pandas gives every Styler a random id (``T_<5 hex digits>``) that ends up in the HTML;
    here the id is a digest of the table's content instead, so identical tables render to
    identical bytes. Cell values and column labels are HTML-escaped.
    """
    content = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    digest = hashlib.sha256(content + repr(list(frame.columns)).encode()).hexdigest()[:10]
    # Cells and headers may come from the user (column names, covariate levels, file
    # names): escaped, so that no value can put markup into a report. Every later
    # ``.format(...)`` escapes too (_EscapedStyler): pandas' ``format({"n": fmt})`` resets
    # the formatter of EVERY column, escaping included, so the overview showed a column
    # named ``<script>...`` as live markup.
    styler = _EscapedStyler(frame).set_uuid(digest).format().format_index(
        escape="html", axis=1)
    return styler.hide(axis="index") if hide_index else styler


class _EscapedStyler(Styler):
    """A ``Styler`` whose :meth:`format` escapes HTML unless told otherwise."""

    def format(self, *args: Any, **kwargs: Any) -> Styler:  # type: ignore[override]
        kwargs.setdefault("escape", "html")
        return super().format(*args, **kwargs)


_COMPONENTS = {
    "therapist": "Therapist intercept",
    "client": "Client intercept",
    "client_time": "Client slope on time",
    "residual": "Residual (session)",
}


def component_label(component: str) -> str:
    """Readable name of a variance component (``client_time`` -> ``Client slope on time``)."""
    return _COMPONENTS.get(component, component.replace("_", " \u00d7 ").capitalize())


def variance_table(varcomp: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """APA table of variance components: Model, Component, Variance, SD.

    With one model in ``models`` the Model column is dropped (a report's own table).
    """
    rows = varcomp if models is None else varcomp[varcomp["model"].isin(models)]
    table = pd.DataFrame({
        "Model": model_labels(rows["model"]),
        "Component": [component_label(c) for c in rows["component"]],
        "Variance": [format_num(v, decimals("variance")) for v in rows["variance"]],
        "SD": [format_num(v, decimals("variance")) for v in rows["sd"]],
    })
    if models is not None and len(models) == 1:
        table = table.drop(columns="Model")
    return table.reset_index(drop=True)


def lr_table(lr: pd.DataFrame, described: dict[str, str] | None = None) -> pd.DataFrame:
    """APA table of likelihood-ratio tests: Comparison, df (integer), chi-squared, p, AIC.

    Only the comparisons that were tested (a model without numbers leaves nothing to put
    in a row): :func:`lr_not_tested` says in words which were not, and why.
    """
    described = described or {}
    lr = lr[lr["statistic"].notna()]
    return pd.DataFrame({
        "Comparison": [described.get(c, c) for c in lr["comparison"]],
        "df": [format_int(v) for v in lr["df"]],
        "\u03c7\u00b2": [format_num(v) for v in lr["statistic"]],
        "p": [format_p(v) for v in lr["p_value"]],
        "AIC (reduced, full)": [f"{format_num(a, decimals('likelihood'))}, "
                                f"{format_num(b, decimals('likelihood'))}"
                                for a, b in zip(lr["aic_reduced"], lr["aic_full"], strict=True)],
    }).reset_index(drop=True)


#: A model's status (``fit_statistics.csv``) as the predicate of a sentence.
#: (one model, two models).
_STATUS_WORDS = {"not estimable": ("is not estimable", "are not estimable"),
                 "not converged": ("did not converge", "did not converge"),
                 "skipped": ("was skipped", "were skipped"), "failed": ("failed", "failed")}


def lr_not_tested(lr: pd.DataFrame, described: dict[str, str] | None = None,
                  stats: pd.DataFrame | None = None) -> list[str]:
    """One sentence per comparison of ``lr`` (``lr_tests.csv``) without a test, saying why.

    E.g. ``'"Do the three subscales differ from their mean?" could not be tested: the
    primary model is not estimable (see above).'`` The models are named by their titles;
    their status is read from ``stats`` (``fit_statistics.csv``), else the table's note is
    given. Plain text (the comparisons' wording is the project's; escape it for Markdown).
    """
    described = described or {}
    status = ({} if stats is None else
              dict(zip(stats["model"].astype(str), stats["status"].astype(str), strict=True)))
    out = []
    for row in lr[lr["statistic"].isna()].itertuples():
        bad = [m for m in (str(row.reduced), str(row.full))
               if m in status and status[m] not in ("fitted", "singular")]
        if bad:
            named = {m: "the primary model" if m == "primary" else
                     f"the model \u201c{model_labels([m])[0]}\u201d" for m in bad}
            if len({status[m] for m in bad}) == 1:    # one verb for both
                words = _STATUS_WORDS.get(status[bad[0]], ("has no numbers", "have none"))
                why = " and ".join(named.values()) + f" {words[len(bad) - 1]}"
            else:
                why = " and ".join(
                    f"{named[m]} {_STATUS_WORDS.get(status[m], ('has no numbers',))[0]}"
                    for m in bad)
            why += " (see above)"
        else:
            note = row.note if isinstance(row.note, str) else ""
            why = note.removeprefix("not tested: ") or "no test was made"
        question = described.get(str(row.comparison), str(row.comparison))
        out.append(f"\u201c{question}\u201d could not be tested: {why}.")
    return out


def estimates_by_model(coefs: pd.DataFrame, models: list[str], terms: list[str],
                       digits: int = 2, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Estimates of ``terms`` (rows, labelled) by model (columns), APA decimals.

    ``labels`` maps a model name to its column heading (names without one stay as they are).
    """
    wide = (coefs[coefs["model"].isin(models) & coefs["term"].isin(terms)]
            .pivot(index="term", columns="model", values="estimate")
            .reindex(index=terms, columns=[m for m in models if m in set(coefs["model"])]))
    table = wide.apply(lambda col: [format_num(v, digits) for v in col])
    table.insert(0, "Term", [term_label(t) for t in wide.index])
    table = table.rename(columns=labels or {})
    return table.reset_index(drop=True)


_BOOTSTRAPPED = {"sd_therapist": "SD therapist intercept", "sd_client": "SD client intercept",
                 "sd_client_time": "SD client slope on time", "sd_residual": "SD residual",
                 "corr_client_time": "Correlation client intercept, slope",
                 "icc_therapist": "ICC therapist", "icc_client": "ICC client",
                 "r2_marginal": "R\u00b2 marginal", "r2_conditional": "R\u00b2 conditional"}


def _boot_kind(quantity: str) -> str:
    """The style's kind of a bootstrapped quantity: SDs ``variance``, ICCs and R²
    ``variance_share``, correlations ``correlation``."""
    if quantity.startswith(("icc_", "r2_")):
        return "variance_share"
    return "correlation" if quantity.startswith("corr_") else "variance"


def bootstrap_table(boot: pd.DataFrame) -> pd.DataFrame:
    """Bootstrap intervals of one model (rows of ``results/bootstrap.csv``): Quantity,
    Estimate and the percentile interval, at the decimals of each quantity's kind
    (:func:`_boot_kind`) and the interval rule (:func:`with_interval`)."""
    cells = [with_interval(est, low, high, kind=_boot_kind(str(q))) for est, low, high, q in
             zip(boot["estimate"], boot["conf_low"], boot["conf_high"], boot["quantity"],
                 strict=True)]
    level = boot["conf_level"].dropna()
    head = f"{percent(float(level.iloc[0]))} bootstrap interval" if len(level) else "interval"
    return pd.DataFrame({
        "Quantity": [_BOOTSTRAPPED.get(q, q) for q in boot["quantity"]],
        "Estimate": [estimate for estimate, _, _ in cells],
        head: [interval for _, interval, _ in cells]})


def fit_table(stats: pd.DataFrame) -> pd.DataFrame:
    """APA table of model fit: N, log-likelihoods, AIC and BIC (ML), R squared, optimizer."""
    fitted = stats[stats["status"].isin(["fitted", "singular"])]
    return pd.DataFrame({
        "Model": model_labels(fitted["model"]),
        "Sessions": [f"{int(n):,}" for n in fitted["n_obs"]],
        "Clients": [f"{int(n):,}" for n in fitted["n_clients"]],
        "LL (REML/ML)": [format_num(v, decimals("likelihood")) for v in fitted["loglik"]],
        "LL (ML)": [format_num(v, decimals("likelihood")) for v in fitted["loglik_ml"]],
        "AIC": [format_num(v, decimals("likelihood")) for v in fitted["aic"]],
        "BIC": [format_num(v, decimals("likelihood")) for v in fitted["bic"]],
        "R\u00b2 marginal": [number(v, "r_squared") for v in fitted["r2_marginal"]],
        "R\u00b2 conditional": [number(v, "r_squared") for v in fitted["r2_conditional"]],
        "Optimizer": fitted["optimizer"].to_numpy(),
        "Converged": ["yes" if yes_no(c) == "yes" else "NO" for c in fitted["converged"]],
    })


def _pct(x: float) -> str:
    """A share as a whole percentage; an em dash where the component is not in the model."""
    return "\u2014" if x is None or not np.isfinite(x) else percent(x)


def _range(low: float, high: float, digits: int | None = None) -> str:
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return "\u2014"
    return f"{format_num(low, digits)} to {format_num(high, digits)}"


def alliance_levels_table(levels: pd.DataFrame) -> pd.DataFrame:
    """Where the alliance lives (``results/alliance_levels.csv``, readable models only).

    Subscale, mean, therapist / client / session shares of the variance, and the range of
    therapist means the therapist variance implies (middle 95% of therapists); an em dash
    where the model has no such component (e.g. one therapist).
    """
    rows = levels[levels["status"].isin(["fitted", "singular"])]
    return pd.DataFrame({
        "Subscale": [s.capitalize() for s in rows["subscale"]],
        "Mean": [format_num(v) for v in rows["mean"]],
        "Therapist": [_pct(v) for v in rows["share_therapist"]],
        "Client (within therapist)": [_pct(v) for v in rows["share_client"]],
        "Session": [_pct(v) for v in rows["share_session"]],
        "Therapist means (middle 95%)": [
            _range(lo, hi) for lo, hi in zip(rows["therapist_mean_low"],
                                             rows["therapist_mean_high"], strict=True)],
    }).reset_index(drop=True)


def alliance_change_table(change: pd.DataFrame) -> pd.DataFrame:
    """Alliance over sessions (``results/alliance_change.csv``, readable models only).

    Subscale, expected score at the first session, change per session with its interval,
    df and p, and the range of clients' own slopes (middle 95%; an em dash when the client
    slope is not in the model).
    """
    rows = change[change["status"].isin(["fitted", "singular"])]
    level = rows["conf_level"].dropna()
    ci = f"{percent(float(level.iloc[0]))} CI" if len(level) else "CI"
    # the slope, its interval and the clients' slopes at the slope's decimals
    slopes = [with_interval(*v) for v in
              zip(rows["slope"], rows["conf_low"], rows["conf_high"], strict=True)]
    table = pd.DataFrame({
        "Subscale": [s.capitalize() for s in rows["subscale"]],
        "First session": [format_num(v) for v in rows["intercept"]],
        "Change per session": [b for b, _, _ in slopes],
        ci: [interval for _, interval, _ in slopes],
        "df": [format_df(v) for v in rows["df"]],
        "p": [format_p(v) for v in rows["p_value"]],
        "Clients' own slopes (middle 95%)": [
            _range(lo, hi, d) for lo, hi, (_, _, d) in zip(
                rows["client_slope_low"], rows["client_slope_high"], slopes, strict=True)],
    })
    return table.reset_index(drop=True)


def counted(n: float, noun: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: ``counted(1, "therapist")`` is ``1
    therapist``, ``counted(2294, "session")`` ``2,294 sessions`` (``plural``: when not
    ``noun + "s"``). The reports said "1 therapists" on one therapist's data."""
    k = int(n)
    return f"{k:,} {noun if k == 1 else plural or noun + 's'}"
