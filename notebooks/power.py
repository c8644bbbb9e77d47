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
# # Planning a study: how many therapists, clients and sessions?
#
# **In short.** *Power* is the chance that a study finds an effect that is really there:
# that the test of, say, the within-client goal effect gives p < α. It depends on the size
# of the effect, on how much the outcome varies between therapists, between clients and from
# session to session, and on the design. Mixed models have no simple formula for it, so
# this report *simulates*: for each planned design it generates many studies from a model
# whose true values are known, fits the same model the analysis plan fits, and counts how
# often each test rejects. Where a fit fails, that is counted and shown, never read as
# "no effect" (a known pitfall of simulation-based power: failed fits silently counted as
# non-rejections make power look lower than it is).

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import html

import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.power.truth import ASSUMED
from pipeline.references import reference_list
from pipeline.report import (
    NEEDS_POWER,
    data_notice,
    escape,
    model_readable,
    not_fitted_words,
    open_project,
    tagged_models,
)
from pipeline.tables import given, model_label, model_labels, number, styled, term_label

root, params = open_project(params_file)
display(Markdown(data_notice(params)))
results = root / "results"
figures.apply_style()
power_file = results / "power.csv"
power = pd.read_csv(power_file) if power_file.is_file() else pd.DataFrame()
available = len(power) > 0
if available:
    target_table = pd.read_csv(results / "power_target.csv", keep_default_na=False)
    truth = pd.read_csv(results / "power_truth.csv")
else:
    # The power stage simulates from a fitted model; say why there is none. Without its
    # numbers the sections below (cell tag needs-power) are left out of the report.
    model = tagged_models(params)[NEEDS_POWER]
    stats = pd.read_csv(results / "fit_statistics.csv")
    row = stats[stats["model"] == model]
    name = ("the primary model" if model == "primary" else
            f"the model *{escape(model_labels([model])[0])}*")
    if model_readable(results / "fit_statistics.csv", model) and len(row):
        why = ("yet `results/power.csv` is empty or absent (the `power` stage writes it; "
               "its log line says why)")
    else:
        why = (f"{name} is "
               f"{escape(not_fitted_words(*row[['status', 'reason', 'warning']].iloc[0]))}"
               if len(row) else f"{name} was not fitted")
        why += (". The sections that read the simulation (what was simulated, the "
                "alliance process, power by design, failed and singular fits, the smallest "
                "design that reaches the target) are left out")
    display(Markdown(f"**No power analysis on these data**: the simulation takes its true "
                     f"values from the fitted model, and {why}."))

# %% [markdown] tags=["needs-power"]
# ## What was simulated
#
# Each simulated study has the planned number of therapists, clients per therapist and
# sessions. Goal, task and bond are drawn at the therapist, client and session level (the
# alliance process in the second table), the predictors are built from them exactly as
# for real data (time, and each client's mean and session-to-session deviations), and
# the outcome is drawn from the model with the true values in the first table: fixed
# effects from `power.effects` where set, otherwise the estimates of the model fitted to
# these data; variance components from `power.sd` where set, otherwise from that fit.

# %% tags=["needs-power"]
if available:
    n_rep = int(power["replications"].iloc[0])
    alpha = float(power["alpha"].iloc[0])
    model = html.escape(model_label(str(power["model"].iloc[0])))
    df_method = str(params["model"].get("df_method", "satterthwaite"))
    df_words = {"satterthwaite": "Satterthwaite degrees of freedom, as lmerTest "
                "(Kuznetsova et al., 2017)",
                "kenward-roger": "Kenward-Roger degrees of freedom, as lmerTest "
                "(Kuznetsova et al., 2017)"}.get(df_method, "a normal (Wald z) reference")
    display(Markdown(
        f"**{model}**, {power['design'].nunique()} designs, **{n_rep:,} simulated "
        f"studies per design**, each term tested at α = {given(alpha, 'p_value')} with "
        f"{df_words}. "
        "*Value* in the table below is the true value the studies are simulated from "
        "(*source*: `power.effects` or `power.sd` when you set it, else the fitted model)."))
    components = {"therapist": "Therapist intercept", "client": "Client intercept",
                  "client_time": "Client slope on time", "residual": "Residual (session)",
                  "client_time_corr": "Client intercept and slope"}
    process = truth[truth["kind"] == "alliance"]
    truth = truth[truth["kind"] != "alliance"]
    shown = truth.assign(parameter=[term_label(p) if k == "fixed effect"
                                    else components.get(p, p)
                                    for p, k in zip(truth["parameter"], truth["kind"],
                                                    strict=True)],
                         value=[number(v, "simulated_correlation" if k == "correlation"
                                       else "simulated")
                                for v, k in zip(truth["value"], truth["kind"], strict=True)])
    display(styled(shown))
    assumed = truth[(truth["kind"] == "SD") & (truth["source"] == ASSUMED)]
    if len(assumed):
        stats = pd.read_csv(results / "fit_statistics.csv", keep_default_na=False)
        simple = stats.loc[stats["model"] == power["model"].iloc[0], "simplification"]
        why = f" ({escape(str(simple.iloc[0]))})" if len(simple) and simple.iloc[0] else ""
        parts = " and ".join(components.get(p, p).lower() for p in assumed["parameter"])
        display(Markdown(
            f"**The {parts} variance could not be estimated on these data**{why}. The "
            "simulated studies have none (SD 0), although the planned model estimates it, "
            "so the power of the terms it bears on is flattered"
            + (" (a therapist variance widens the intervals of the between-client effects)"
               if "therapist" in set(assumed["parameter"]) else "")
            + " and many simulated fits are singular. For a realistic plan, give a value "
            "from a larger study or the literature in `power.sd` of params.yaml."))

# %% [markdown] tags=["needs-power"]
# **The alliance process.** How much the alliance varies between sessions of the same
# client decides the power of the within-client effects; how much it varies between
# clients and therapists, that of the between effects; and how closely goal, task and
# bond move together, how well the model can tell their effects apart (closely related
# predictors have wider intervals). Unless `power.alliance` sets them, these values are
# estimated from the data the model was fitted to: for each subscale a mixed model of the
# score on time with therapist and client intercepts gives the mean at the first session,
# the change per session and the SDs (pooled over the three subscales), and the
# correlations are those of the subscales within clients and, corrected for the
# session-to-session noise in a client's mean, between clients. They describe the scores
# as observed, with their measurement error, as the predictors of a real study would be.

# %% tags=["needs-power"]
if available and len(process):
    from pipeline.power.process import PARAMETERS

    source = str(process["source"].iloc[0])
    origin = ("estimated from these data" if source.startswith("these data")
              else "set in `power.alliance`")
    notes = (source.removeprefix("these data (").removesuffix(")")
             if source.startswith("these data (") else "")
    display(Markdown(f"The alliance process was **{origin}**"
                     + (f" ({escape(notes)}; an SD that could not be estimated is 0 here)"
                        if notes else "") + "."))
    display(styled(pd.DataFrame({
        "alliance process": [PARAMETERS.get(p, p) for p in process["parameter"]],
        "value": [number(v, "simulated_correlation" if str(p).endswith("_corr")
                         else "simulated")
                  for v, p in zip(process["value"], process["parameter"], strict=True)]})))

# %% [markdown] tags=["needs-power"]
# ## Power by design
#
# Each line is one term (colour: goal, task or bond, as in every figure; solid: within
# client, dashed: between clients); the band is the Monte-Carlo 95% interval (how far the
# estimate could be from the power an infinite number of simulations would give). The
# dashed grey line is the target power, the dotted one α: a term with no true effect
# should sit on α, which checks the test itself. A design is named *therapists* x
# *clients per therapist* x *planned sessions per client*.

# %% tags=["needs-power"]
if available:
    target = float(target_table["target"].iloc[0])
    figures.show(*figures.power_curves(power, target), "power_curves")

# %% tags=["needs-power"]
if available:
    table = pd.DataFrame({
        "design": power["design"].map(lambda s: html.escape(str(s))),
        "therapists": power["therapists"], "clients each": power["clients_per_therapist"],
        "sessions": power["sessions"], "term": power["term"].map(term_label),
        "true effect": [number(v, "simulated") for v in power["effect"]],
        "power": [number(v, "power") for v in power["power"]],
        "95% MC interval": [f"[{number(lo, 'power')}, {number(hi, 'power')}]"
                            for lo, hi in zip(power["conf_low"], power["conf_high"],
                                              strict=True)],
        "failed fits": power["failed"], "singular fits": power["singular"],
    })
    display(styled(table))

# %% [markdown] tags=["needs-power"]
# **Failed and singular fits.** A *failed* fit did not converge, or the planned model
# could not be estimated on that simulated study (for example too few sessions for a
# client slope); it is left out of the power and counted here. A *singular* fit put a
# variance at zero (often the small client slope on time in short series); its tests still
# count, as in lme4. The run stops when more than `power.max_failed_share` of a design's
# fits fail, because power from the rest would be biased.

# %% tags=["needs-power"]
if available:
    failed = int(power.groupby("design")["failed"].first().sum())
    total = int(power.groupby("design")["replications"].first().sum())
    display(Markdown(f"In all, **{failed:,} of {total:,}** simulated studies could not be "
                     "fitted as planned."))
    nulls = power[power["effect"] == 0]
    for _, row in nulls.iterrows():
        display(Markdown(
            f"*Type-I check:* {term_label(row['term'])} has no true effect; in design "
            f"{html.escape(str(row['design']))} its test rejected in "
            f"{number(row['power'], 'power')} of the fits (α = {given(alpha, 'p_value')}; "
            "Monte-Carlo "
            f"interval {number(row['conf_low'], 'power')} to "
            f"{number(row['conf_high'], 'power')})."))

# %% [markdown] tags=["needs-power"]
# ## The smallest design that reaches the target
#
# "Smallest" means the fewest planned sessions in all (therapists × clients × sessions),
# then the fewest therapists.

# %% tags=["needs-power"]
if available:
    lines = []
    true_effect = power.groupby("term")["effect"].first()
    for _, row in target_table.iterrows():
        label = term_label(row["term"])
        if float(true_effect.get(row["term"], float("nan"))) == 0:
            lines.append(f"- **{label}**: no true effect was simulated, so its rejection "
                         "rate is the type-I error rate (above), not power; no design "
                         "is meant to reach the target.")
        elif row["design"]:
            lines.append(f"- **{label}**: design {html.escape(str(row['design']))} "
                         f"(power {number(float(row['power']), 'power')}, "
                         f"{int(float(row['planned_sessions'])):,} planned sessions).")
        else:
            lines.append(f"- **{label}**: none of the designs reaches power "
                         f"{number(float(row['target']), 'power')}; plan a larger study or "
                         "expect a larger effect.")
    display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Planning a real study
#
# The settings are under `power:` in `params.yaml`. For a study plan use more simulated
# studies (1,000 or more per design keeps the Monte-Carlo interval within about ±3
# percentage points), set the effect you want to detect in `power.effects`, and list the
# designs you could afford. Replicates run in parallel (`parallel.workers`, or
# `parallel.scheduler` for a Dask cluster) and give the same numbers whatever the number of
# workers; an interrupted run resumes where it stopped.
#
# **What this cannot tell you.** The simulation assumes the model is right: normal random
# effects, the same effect for every client, no dropout related to the outcome. Real data
# are messier; treat the numbers as a lower bound on the size a study needs.

# %% tags=["needs-power"]
# The works this report cites (docs/references.yaml): the df method, in "What was simulated".
display(Markdown(reference_list(["kuznetsova_2017"])))
