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
# # Psychometrics: how the questionnaires were scored and how reliable they are
#
# **In short.** Before any model, the scores themselves must be right. This report says how
# each questionnaire was scored, how many scores had to be prorated or were left missing,
# how consistently the items of each alliance subscale measure the same thing (Cronbach's
# alpha and McDonald's omega), how goal, task and bond relate to each other within and
# between clients, and how many answers sit at the bottom or top of the scale. Aggregates
# only; counts below `report.min_cell` are suppressed.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.instruments import load_instrument
from pipeline.report import data_notice, open_project
from pipeline.tables import styled

root, params = open_project(params_file)
display(Markdown(data_notice(params)))
results = root / "results" / "scoring"
min_cell = int(params["report"]["min_cell"])
figures.apply_style()
paths = params["instruments"].get("paths") or []
alliance = load_instrument(params["instruments"]["alliance"], paths)
outcome = load_instrument(params["instruments"]["outcome"], paths)

# %% [markdown]
# ## The scoring keys
#
# Keys are data, one YAML file per questionnaire under `pipeline/instruments/`. Item
# values are checked against the questionnaire's range *before* any item is reversed, so a
# blank reversed item stays blank instead of turning into an impossible score.

# %%
keys = pd.DataFrame(
    [{"subscale": name, "items": ", ".join(
        f"{i}{'R' if i in alliance.reversed else ''}" for i in items)}
     for name, items in alliance.subscales.items()]
)
display(Markdown(
    f"**{alliance.name}** (`{alliance.key}`): {alliance.n_items} items, range "
    f"{alliance.item_min:g}–{alliance.item_max:g}, subscales scored as item means "
    f"(R = reversed). Key: {alliance.checked}. Missing items: a subscale is scored when at "
    f"most {alliance.missing.get('max_missing_per_subscale', 0)} of its items is blank "
    "(mean of the answered items), otherwise it is missing."
))
styled(keys)

# %%
direction = "higher = better" if outcome.direction == "higher_better" else "higher = worse"
turned = (outcome.direction == "higher_worse"
          and params["instruments"].get("outcome_higher_is_better", True))
display(Markdown(
    f"**{outcome.name}** (`{outcome.key}`): {outcome.n_items} items, {direction}"
    + (" — turned round so that higher = better in every table and model."
       if turned else ".")
    + (" Raw sums are converted to the metric score with the published table."
       if outcome.conversion else "")
))

# %% [markdown]
# ## How many scores were complete, prorated or missing

# %%
scoring = pd.read_csv(results / "scoring.csv")
cols = ["instrument", "scale", "n_rows", "n_complete", "n_prorated", "n_missing", "metric"]
styled(scoring[cols]).format(
    {c: (lambda v: f"< {min_cell}" if pd.isna(v) else f"{v:,.0f}")
     for c in ["n_rows", "n_complete", "n_prorated", "n_missing"]}
)

# %% [markdown]
# ## Reliability
#
# **Cronbach's alpha** and **McDonald's omega (total)** say how strongly the items of a
# subscale hang together, from 0 to 1; above about .70 is usually taken as acceptable for
# research. Alpha assumes every item measures the subscale equally well; omega, from a
# one-factor model, does not. Computed on every returned form (all sessions together) and
# per session where at least `psychometrics.min_n_per_session` forms were returned. Values
# agree with R's `psych` package (tests pin them).

# %%
rel_file = results / "reliability.csv"
if rel_file.is_file():
    rel = pd.read_csv(rel_file)
    overall = rel[rel["subset"] == "all"][["scale", "n", "alpha", "omega_total"]]
    display(styled(overall).format(
        {"n": "{:,.0f}", "alpha": "{:.2f}", "omega_total": "{:.2f}"}))
    fig, _ = figures.reliability(rel, pd.read_csv(results / "floor_ceiling.csv"))
    plt.show()
    display(Markdown(
        "Left: Cronbach's alpha at each session with enough forms (dashed line: .70). "
        "Right: the share of answers at the top option of each item (colour = subscale), "
        "discussed under *Floor and ceiling* below."))
else:
    display(Markdown("The alliance data were pre-scored: item-level reliability cannot be "
                     "computed."))

# %% [markdown]
# ## Goal, task and bond: one alliance or three?
#
# Correlations **between clients** (of client means) say whether clients who rate one part
# of the alliance highly rate the others highly too. Correlations **within clients** (of
# each session's deviation from the client's own mean) say whether a session that is better
# than usual on one part is better on the others. High correlations mean the subscales are
# hard to tell apart, which makes their separate effects in the models less certain.

# %%
corr = pd.read_csv(results / "subscale_correlations.csv")
styled(corr).format({"r": "{:.2f}", "n_obs": "{:,.0f}",
                                      "n_clients": "{:,.0f}"})

# %% [markdown]
# ## Floor and ceiling
#
# Answers at the lowest and highest option of each item. Alliance ratings are often near
# the top: a ceiling hides differences among clients who are all satisfied.

# %%
fc_file = results / "floor_ceiling.csv"
if fc_file.is_file():
    fc = pd.read_csv(fc_file)
    fc = fc[["item", "scale", "n", "n_floor", "pct_floor", "n_ceiling", "pct_ceiling"]]
    def count(v: float) -> str:
        return f"< {min_cell}" if pd.isna(v) else f"{v:,.0f}"

    def pct(v: float) -> str:
        return "–" if pd.isna(v) else f"{v:.1f}%"

    display(styled(fc).format({"n": "{:,.0f}", "n_floor": count, "n_ceiling": count,
                               "pct_floor": pct, "pct_ceiling": pct}))

# %%
# The works this report cites (docs/references.yaml; the questionnaires used, too).
from IPython.display import Markdown, display

from pipeline.references import instrument_keys, reference_list

display(Markdown(reference_list(["cronbach_1951", "mcdonald_1999", *instrument_keys(params)])))
