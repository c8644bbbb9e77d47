# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sensitivity analyses: do the conclusions depend on the choices made?
#
# **In short.** The primary model rests on choices: REML estimation, within-client
# deviations from each client's mean, every client whatever the number of sessions. This
# report refits the primary model with each choice changed (group 7 of the analysis plan)
# and sets the within- and between-client effects of goal, task and bond side by side. If
# the estimates barely move, the conclusion does not hang on that choice.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import html

import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.instruments import load_instrument
from pipeline.models import load_specs
from pipeline.models.results import read_results
from pipeline.report import (
    data_notice,
    escape,
    has_outcome,
    not_fitted_words,
    open_project,
    outcome_noun,
    reason_words,
)
from pipeline.tables import estimates_by_model, format_num, model_label, styled, term_label

root, params = open_project(params_file)
display(Markdown(data_notice(params)))
results = root / "results"
figures.apply_style()
tables = read_results(results)
coefs, stats = tables["coefficients"], tables["fit_statistics"]
plan = load_specs()
conf = float(params["model"].get("conf_level", 0.95))
cfg = params["instruments"]
outcome = (load_instrument(cfg["outcome"], cfg.get("paths") or []) if has_outcome(params)
           else None)
higher_is_better = bool(cfg.get("outcome_higher_is_better", True))

# %% [markdown]
# ## The alternatives
#
# - **ML instead of REML**: REML corrects the variance components for the
#   fixed effects estimated; with hundreds of clients the fixed effects should hardly change.
# - **Detrended within-client alliance**: if a client's alliance and
#   outcome both improve over therapy, part of the within-client association may be the two
#   trends. Here each client's linear trend is removed from their alliance before the
#   within-client part is computed (Falkenström et al., 2017).
# - **Clients with at least three sessions**: a client with one or two
#   sessions says little about within-client change.
# - **Correlated client intercept and slope**: lme4's default random
#   part, `(1 | therapist_id) + (1 + time | client_id)`; the primary model keeps the client
#   slope on time uncorrelated with the client intercept, which makes the fit depend on
#   where time is zero.

# %%
names = list(params["report"]["sensitivity_models"])
readable = set(stats.loc[stats["status"].isin(["fitted", "singular"]), "model"])
rows = []
for name in names:
    hit = stats[stats["model"] == name]
    if hit.empty:   # not in these results (e.g. written before the model was added)
        rows.append({"Model": model_label(name, plan), "Sessions": "", "Clients": "",
                     "Status": "not fitted"})
        continue
    st = hit.iloc[0]
    ok = st["status"] in ("fitted", "singular")
    rows.append({"Model": model_label(name, plan),
                 "Sessions": f"{int(st['n_obs']):,}" if ok else "",
                 "Clients": f"{int(st['n_clients']):,}" if ok else "",
                 "Status": st["status"] if ok else  # a styled table escapes its cells
                 not_fitted_words(st["status"], st["reason"], st["warning"])})
styled(pd.DataFrame(rows))

# %% [markdown] tags=["needs-primary"]
# ## Effects side by side
#
# Each point is an estimate with its confidence interval; each row a term, each colour a
# model.

# %% tags=["needs-primary"]
shown = [n for n in names if n in readable]
if "primary" in shown:
    figures.show(*figures.sensitivity(coefs, shown, {n: model_label(n, plan) for n in shown},
                                     outcome_label=outcome_noun(outcome, higher_is_better,
                                                                escaped=False)),
                 "sensitivity")

# %% tags=["needs-primary"]
terms = [f"{k}_{part}" for part in ("within", "between") for k in ("goal", "task", "bond")]
if "primary" in shown and len(shown) > 1:
    wide = (coefs[coefs["model"].isin(shown) & coefs["term"].isin(terms)]
            .pivot(index="term", columns="model", values="estimate")
            .loc[terms, shown])
    change = wide.drop(columns="primary").sub(wide["primary"], axis=0).abs().stack()
    (where, by), shift = change.idxmax(), change.max()
    display(styled(estimates_by_model(coefs, shown, terms,
                                      labels={n: model_label(n, plan) for n in shown})))
    display(Markdown(
        f"The largest change of an estimate from the primary model is **{format_num(shift)}** "
        f"points of {outcome_noun(outcome, higher_is_better)} per alliance point: "
        f"{term_label(where)} in "
        f"*{escape(model_label(by, plan))}*. Compare it with the estimates' standard errors "
        "in the models report: a change well inside one standard error does not alter the "
        "conclusion."
    ))

# %% [markdown]
# ## The specification curve: every reasonable analysis at once
#
# Each sensitivity model above changes one choice. But the choices combine: detrended
# *and* lagged, ML *and* only clients with three sessions. The *specification curve*
# (Simonsohn, Simmons & Nelson, 2020) fits the model under every combination of the
# choices listed in `params.yaml` (`specification_curve:`) and sorts the within-client
# estimates from low to high. The panel under each curve shows which options each
# specification used, so you can see which choice moves the estimate. A conclusion that
# holds across the whole curve does not depend on the analyst's choices; one that flips
# sign with one choice does, and that choice needs a substantive argument.

# %%
curve_file = results / "specification_curve.csv"
curve = pd.read_csv(curve_file) if curve_file.is_file() else None
if curve is not None and curve["estimate"].notna().any():
    figures.show(*figures.specification_curve(curve, conf), "specification_curve")
elif curve is not None:
    reasons = "; ".join(dict.fromkeys(reason_words(r) for r in curve["reason"].dropna()))
    display(Markdown(f"No specification could be estimated on these data: {escape(reasons)}."))
    curve = None
else:
    display(Markdown("No specification curve was computed (`results/specification_curve.csv` "
                     "is absent)."))

# %%
if curve is not None:
    choices = ["within", "lag", "random_slope", "estimation", "min_sessions"]
    summary = []
    lines = []
    n_specs = curve["spec"].nunique()
    for term, rows in curve.groupby("term", sort=False):
        ok = rows[rows["estimate"].notna()]
        positive = int(((ok["conf_low"] > 0)).sum())
        negative = int(((ok["conf_high"] < 0)).sum())
        # Which choice moves the estimate most: the largest gap between the mean
        # estimates of its options.
        gaps = {c: ok.groupby(c)["estimate"].mean().agg(lambda s: s.max() - s.min())
                for c in choices if ok[c].nunique() > 1}
        biggest = max(gaps, key=lambda c: gaps[c]) if gaps else None
        summary.append({
            "Term": term_label(term), "Specifications": f"{len(ok)} of {n_specs}",
            "Median estimate": format_num(ok["estimate"].median()) if len(ok) else "",
            "Range": (f"{format_num(ok['estimate'].min())} to "
                      f"{format_num(ok['estimate'].max())}") if len(ok) else "",
            "CI above 0": positive, "CI below 0": negative,
            "Choice that matters most": (f"{figures.choice_label(biggest)} "
                                         f"(gap {format_num(gaps[biggest])})")
            if biggest else "",
        })
        if len(ok) and biggest is not None:
            means = ok.groupby(biggest)["estimate"].mean()
            detail = ", ".join(
                f"{html.escape(figures.OPTIONS.get(str(k), str(k)))}: {format_num(v)}"
                for k, v in means.items())
            lines.append(f"- **{term_label(term)}**: positive with an interval above 0 in "
                         f"{positive} of {len(ok)} specifications, negative in {negative}. "
                         f"The choice that moves it most is *{figures.choice_label(biggest)}* "
                         f"(mean estimate by option: {detail}).")
    display(styled(pd.DataFrame(summary)))
    failed = curve[curve["estimate"].isna()].drop_duplicates("spec")
    if len(failed):
        lines.append(f"- {len(failed)} specification(s) could not be estimated on these data; "
                     "their reasons are in `results/specification_curve.csv`.")
    display(Markdown("\n".join(lines)))

# %% [markdown]
# **How to read a split curve.** When the lag is the choice that matters (as it often is),
# the two halves answer different questions: lag 0 asks whether sessions with a
# better-than-usual alliance are also sessions with a better outcome; lag 1 asks whether
# a better-than-usual alliance is followed by a better outcome at the next session, after
# adjusting for the outcome at the previous one. The second is closer to a causal question,
# but a lagged outcome next to a client intercept is biased in short series (Nickell,
# 1981), so a small or negative lag-1 estimate is not by itself evidence against an
# alliance effect.

# %%
# The works this report cites (docs/references.yaml).
from IPython.display import Markdown, display

from pipeline.references import reference_list

display(Markdown(reference_list(["falkenstrom_2017", "simonsohn_2020", "nickell_1981"])))
