"""APA-style publication tables from the results files, as HTML, LaTeX and Markdown.

Built with pandas' ``Styler`` (HTML, LaTeX with booktabs) and ``tabulate`` (Markdown via
``DataFrame.to_markdown``), so no table markup is written by hand here. Numbers follow
APA 7: two decimals, intervals in brackets, p-values without a leading zero and
``< .001`` below one in a thousand.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from pipeline.outputs import atomic_open


def format_p(p: float) -> str:
    """APA p-value: ``< .001``, else three decimals without the leading zero."""
    if p is None or not np.isfinite(p):
        return ""
    if p < 0.001:
        return "< .001"
    return f"{p:.3f}".lstrip("0")


def format_num(x: float, digits: int = 2) -> str:
    """Fixed decimals with a true minus sign; blank for missing values."""
    if x is None or not np.isfinite(x):
        return ""
    text = f"{x:.{digits}f}"
    return text.replace("-", "\u2212") if text.startswith("-") else text


_PARTS = {
    "within_lag": "within client, previous session",
    "within": "within client",
    "between": "between clients",
    "client": "client within therapist",
    "therapist": "therapist mean",
    "lag": "previous session",
}
_CATEGORY = re.compile(r"^C\((?P<var>[^)]+)\)\[T\.(?P<level>.+)\]$")


def term_label(term: str) -> str:
    """Readable name of a model term.

    ``goal_within`` -> ``Goal (within client)``; ``C(approach)[T.CBT]`` -> ``Approach:
    CBT``; interactions are joined with a multiplication sign.
    """
    if ":" in term:
        return " \u00d7 ".join(term_label(part) for part in term.split(":"))
    if term == "Intercept":
        return "Intercept"
    if term == "time":
        return "Time (session \u2212 1)"
    match = _CATEGORY.match(term)
    if match:
        return f"{match['var'].replace('_', ' ').capitalize()}: {match['level']}"
    for suffix, words in _PARTS.items():
        if term.endswith(f"_{suffix}"):
            stem = term[: -len(suffix) - 1].replace("_", " ")
            stem = "Total alliance" if stem == "total" else stem.capitalize()
            return f"{stem} ({words})"
    return term.replace("_", " ").capitalize()


def coefficient_table(coefs: pd.DataFrame, models: list[str] | None = None,
                      conf_level: float = 0.95) -> pd.DataFrame:
    """APA table of fixed effects: Model, Term, b, SE, CI, p (and p Holm when present)."""
    rows = coefs if models is None else coefs[coefs["model"].isin(models)]
    ci = f"{round(conf_level * 100)}% CI"
    table = pd.DataFrame({
        "Model": rows["model"].to_numpy(),
        "Term": [term_label(t) for t in rows["term"]],
        "b": [format_num(v) for v in rows["estimate"]],
        "SE": [format_num(v) for v in rows["std_error"]],
        "df": [format_num(v, 1) for v in rows["df"]] if "df" in rows.columns else "",
        ci: [f"[{format_num(lo)}, {format_num(hi)}]"
             for lo, hi in zip(rows["conf_low"], rows["conf_high"], strict=True)],
        "p": [format_p(v) for v in rows["p_value"]],
    })
    if "df" not in rows.columns or not rows["df"].notna().any():
        table = table.drop(columns="df")   # Wald z: no df
    if "p_holm" in rows.columns and rows["p_holm"].notna().any():
        table["p (Holm)"] = [format_p(v) for v in rows["p_holm"]]
    if models is not None and len(models) == 1:
        table = table.drop(columns="Model")
    return table.reset_index(drop=True)


def write_table(table: pd.DataFrame, outdir: str | Path, name: str, title: str,
                note: str) -> list[Path]:
    """Write ``name``.html, .tex and .md into ``outdir`` atomically."""
    out = Path(outdir)
    styler = table.style.hide(axis="index").set_uuid(name).set_caption(title)
    html = styler.to_html(table_attributes='class="apa-table"', exclude_styles=True)
    html += f'<p class="apa-note"><em>Note.</em> {note}</p>\n'
    latex = styler.to_latex(hrules=True, position="htbp", label=f"tab:{name}")
    latex += f"% Note. {note}\n"
    body = table.to_markdown(index=False, disable_numparse=True)
    markdown = f"**{title}**\n\n{body}\n\n*Note.* {note}\n"
    paths = []
    for suffix, text in (("html", html), ("tex", latex), ("md", markdown)):
        path = out / f"{name}.{suffix}"
        with atomic_open(path) as fh:
            fh.write(text)
        paths.append(path)
    return paths


def styled(frame: pd.DataFrame, hide_index: bool = True) -> Styler:
    """A ``Styler`` for reports whose HTML id does not change between runs.

    pandas gives every Styler a random id (``T_<5 hex digits>``) that ends up in the HTML;
    here the id is a digest of the table's content instead, so identical tables render to
    identical bytes.
    """
    content = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    digest = hashlib.sha256(content + repr(list(frame.columns)).encode()).hexdigest()[:10]
    styler = frame.style.set_uuid(digest)
    return styler.hide(axis="index") if hide_index else styler


def variance_table(varcomp: pd.DataFrame) -> pd.DataFrame:
    """APA table of variance components: Model, Component, Variance, SD."""
    return pd.DataFrame({
        "Model": varcomp["model"].to_numpy(),
        "Component": varcomp["component"].str.replace("_", " \u00d7 ", regex=False).to_numpy(),
        "Variance": [format_num(v, 3) for v in varcomp["variance"]],
        "SD": [format_num(v, 3) for v in varcomp["sd"]],
    })


def fit_table(stats: pd.DataFrame) -> pd.DataFrame:
    """APA table of model fit: N, log-likelihoods, AIC and BIC (ML), R squared, optimizer."""
    fitted = stats[stats["status"].isin(["fitted", "singular"])]
    return pd.DataFrame({
        "Model": fitted["model"].to_numpy(),
        "Sessions": [f"{int(n):,}" for n in fitted["n_obs"]],
        "Clients": [f"{int(n):,}" for n in fitted["n_clients"]],
        "LL (REML/ML)": [format_num(v, 1) for v in fitted["loglik"]],
        "LL (ML)": [format_num(v, 1) for v in fitted["loglik_ml"]],
        "AIC": [format_num(v, 1) for v in fitted["aic"]],
        "BIC": [format_num(v, 1) for v in fitted["bic"]],
        "R\u00b2 marginal": [format_num(v, 2) for v in fitted["r2_marginal"]],
        "R\u00b2 conditional": [format_num(v, 2) for v in fitted["r2_conditional"]],
        "Optimizer": fitted["optimizer"].to_numpy(),
        "Converged": ["yes" if c else "NO" for c in fitted["converged"]],
    })
