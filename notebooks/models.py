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
# # Do goal, task and bond predict wellbeing?
#
# **In short.** This report fits the pre-registered primary model of the analysis plan
# (`docs/analysis-plan.md`): wellbeing at each session is predicted from the
# client's goal, task and bond scores, split into a *within-client* part (is a client
# better off in sessions where their alliance is higher than usual for them?) and a
# *between-client* part (are clients with a stronger alliance on average better off?).
# Then come the secondary models. Every number is read from `results/`, where the
# pipeline's `fit` step wrote it.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.instruments import load_instrument
from pipeline.models import load_specs
from pipeline.models.results import read_results
from pipeline.report import data_notice, escape, open_project
from pipeline.score import outcome_range
from pipeline.tables import coefficient_table, format_num, lr_table, styled, variance_table

root, params = open_project(params_file)
display(Markdown(data_notice(params)))
cfg = params["instruments"]
has_outcome = bool(params["data"].get("outcome")) and bool(cfg.get("outcome"))
outcome = load_instrument(cfg["outcome"], cfg.get("paths") or []) if has_outcome else None
outcome_name = escape(outcome.name) if outcome is not None else "the outcome"
results = root / "results"
figures.apply_style()
tables = read_results(results)
coefs, stats = tables["coefficients"], tables["fit_statistics"]
varcomp = tables["variance_components"]

# %% [markdown]
# ## Within and between: two different questions
#
# Each client answers the alliance questionnaire at many sessions. Their scores differ in
# two ways, and the model keeps the two apart (Curran & Bauer, 2011):
#
# - **between clients**: some clients rate the alliance higher *on average* than others.
#   *Goal (between clients)* is a client's mean goal score minus the mean over clients. Its
#   coefficient compares *different people*, so anything that differs between people
#   (how ill they are, what they expect of therapy) can stand behind it.
# - **within a client**: a client's score also moves from session to session around their
#   own mean. *Goal (within client)* is the session's score minus the client's own mean. Its
#   coefficient asks whether *the same person* feels better in sessions where the
#   alliance is stronger than usual for them; stable differences between people cannot
#   explain it.
#
# Each coefficient is the expected change in wellbeing for one point more on the
# subscale (on its item-mean metric: 1–5 for the WAI-SR, 1–7 for the WAI-S), holding the
# other subscales and time constant.
#
# The model also lets clients and therapists differ: a random intercept for each
# therapist, one for each client, and a random slope on time for each client
# (wellbeing changes at different speeds). `time` = session − 1.

# %%
primary = coefs[coefs["model"] == "primary"].copy()
pstats = stats[stats["model"] == "primary"].iloc[0]
primary_ok = pstats["status"] in ("fitted", "singular")
if not primary_ok:
    reason = pstats["reason"] if isinstance(pstats["reason"], str) else pstats["warning"]
    label = "not converged" if pstats["status"] == "not converged" else "not estimable"
    display(Markdown(f"**Primary model: {label}: {escape(str(reason))}** No numbers are "
                     "shown."))
else:
    display(Markdown(
        f"**Primary model** fitted by {'REML' if pstats['reml'] else 'ML'} on "
        f"{int(pstats['n_obs']):,} sessions of {int(pstats['n_clients']):,} clients and "
        f"{int(pstats['n_therapists']):,} therapists. Optimizer: `{pstats['optimizer']}`; "
        "converged (lme4's checks: scaled gradient, Hessian positive definite)."
        + (" **Singular fit**: a variance is estimated at zero (flagged, numbers usable)."
           if pstats["status"] == "singular" else "")
        + (f" Simplified: {escape(pstats['simplification'])}."
           if isinstance(pstats["simplification"], str) and pstats["simplification"] else "")
    ))
    df_method = primary["df_method"].iloc[0]
    display(Markdown(f"p-values and intervals: {df_method}."))
    display(styled(coefficient_table(coefs, ["primary"],
                                     float(params["model"].get("conf_level", 0.95)))))

# %% [markdown]
# ### Reading the intercept and time
#
# Every predictor is centred (`time` = session − 1; a between-client part is 0 for a client
# at the mean of the client means, a within-client part is 0 at the client's own mean), so
# the intercept is a prediction for a concrete, typical case rather than for an impossible
# "alliance of zero".

# %%
if primary_ok:
    term = primary.set_index("term")
    b0, b_time = term.loc["Intercept"], term.loc["time"] if "time" in term.index else None
    level = f"{float(b0['conf_level']):.0%}"
    scale = ""
    if outcome is not None:
        lo, hi = outcome_range(outcome)
        better = (outcome.direction == "higher_better"
                  or bool(cfg.get("outcome_higher_is_better", True)))
        scale = (f" (scored {lo:g}\u2013{hi:g}, higher = "
                 f"{'better' if better else 'worse'})")
    text = (f"The intercept, **{format_num(b0['estimate'])}** ({level} CI "
            f"[{format_num(b0['conf_low'])}, {format_num(b0['conf_high'])}]), is the expected "
            f"wellbeing on the {outcome_name}{scale} at the first session (time 0) of a client "
            "whose alliance is at the average client's level and at their own usual level, "
            "seen by a typical therapist (all random effects at 0).")
    if b_time is not None:
        text += (f" From one session to the next, wellbeing is expected to change by "
                 f"**{format_num(b_time['estimate'])}** points ({level} CI "
                 f"[{format_num(b_time['conf_low'])}, {format_num(b_time['conf_high'])}]) "
                 "for such a client.")
    display(Markdown(text))

# %% [markdown]
# ## Within- versus between-client effects
#
# The plot sets each subscale's within-client effect beside its between-client effect,
# with 95% intervals. An interval that does not cross zero is a clear effect at the 5% level.

# %%
if primary_ok:
    fig, _ = figures.coefficient_plot(coefs)
    plt.show()

# %% [markdown]
# ## What the effects mean in wellbeing points
#
# The lines show how much higher the model predicts wellbeing to be for a session whose
# alliance is *x* points above the client's usual level (within), or for a client whose
# average alliance is *x* points above the average client (between), with everything else
# held constant. The bands are 95% intervals.

# %%
if primary_ok:
    fig, _ = figures.predicted_wellbeing(coefs)
    plt.show()

# %% [markdown]
# ## How much varies between therapists, clients and sessions
#
# Variance components of the primary model. *Therapist intercept* and *Client intercept* are
# the variances of the random intercepts (how much wellbeing differs between therapists, and
# between clients of the same therapist, beyond what the predictors explain), *Client slope
# on time* the variance of the clients' own slopes over sessions, *Residual (session)* what
# is left from session to session.

# %%
if primary_ok:
    display(styled(variance_table(varcomp, ["primary"])))

# %% [markdown]
# ### How sure are these variance components? A parametric bootstrap
#
# A variance estimated from 30 therapists is uncertain, and its sampling distribution is
# skewed (a variance cannot go below zero), so a symmetric "estimate ± 2 SE" interval
# misleads. The *parametric bootstrap* (lme4's `bootMer`) simulates many new data sets from
# the fitted model, on the same clients and sessions, refits the model to each, and takes
# the middle 95% of the refitted values as the interval. It gives intervals for the
# standard deviations, for the therapist and client shares of the variance (ICC: the share
# of the intercept variance at the first session) and for R².

# %%
boot_file = results / "bootstrap.csv"
boot = pd.read_csv(boot_file) if boot_file.is_file() else pd.DataFrame()
if primary_ok and len(boot):
    names = {"sd_therapist": "SD therapist intercept", "sd_client": "SD client intercept",
             "sd_client_time": "SD client slope on time", "sd_residual": "SD residual",
             "corr_client_time": "Correlation client intercept, slope",
             "icc_therapist": "ICC therapist", "icc_client": "ICC client",
             "r2_marginal": "R² marginal", "r2_conditional": "R² conditional"}
    level = float(boot["conf_level"].iloc[0])
    shown = pd.DataFrame({
        "Quantity": boot["quantity"].map(names),
        "Estimate": boot["estimate"].map(lambda v: f"{v:.3f}"),
        f"{level:.0%} bootstrap interval": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in
                                            zip(boot["conf_low"], boot["conf_high"],
                                                strict=True)]})
    display(styled(shown))
    reps, failed = int(boot["replications"].iloc[0]), int(boot["failed"].iloc[0])
    icc = boot.set_index("quantity").loc["icc_therapist"]
    display(Markdown(
        f"Percentile intervals from {reps:,} simulated data sets ({failed} refits failed "
        f"and are left out; {int(boot['singular'].iloc[0])} put a variance at zero). "
        f"Therapists account for {icc['estimate']:.0%} of the intercept variance, and "
        f"data like these are compatible with anything from {icc['conf_low']:.0%} to "
        f"{icc['conf_high']:.0%}."))
elif primary_ok:
    display(Markdown("No bootstrap intervals: `results/bootstrap.csv` is absent or empty "
                     "(the `bootstrap` stage writes it)."))

# %% [markdown]
# ### Does the model fit?
#
# If the model is right, the residuals and the predicted random effects look roughly
# normal: the points of each Q–Q plot (top row) lie near the line.
#
# The bottom row asks whether the model misses a curve, with two plots of the mean residual
# in bins of the fitted values (each bin holds many sessions):
#
# - **Conditional residuals** (left): observed wellbeing minus the full prediction, which
#   includes each client's and therapist's predicted random effects. These predictions are
#   *shrunk* towards zero: a client with few sessions is given only part of their own
#   deviation from the average (the rest could be chance), and the remaining part stays in
#   that client's residuals. Clients predicted high are, on average, even higher than
#   predicted, and clients predicted low even lower, so this line **rises even when the
#   model is exactly right**. Its slope says how much shrinkage there is, not that the model
#   is wrong.
# - **Marginal residuals** (right): observed wellbeing minus the fixed part alone
#   (intercept, time and the alliance terms), binned by that fixed-part prediction. No
#   random effect is predicted here, and the model assumes the random effects are unrelated
#   to the predictors, so **if the fixed part is right every bin's mean lies at zero**, up to
#   chance. The bars are 95% intervals computed from the model (sessions of one client are
#   correlated, which widens them). A run of bins away from zero, or a bend, means the fixed
#   part misses something: a curve in time, a ceiling of the outcome scale, an interaction.
#
# Each point is an aggregate (a quantile or a bin of many sessions), never a single client.

# %%
if primary_ok:
    diag = pd.read_csv(results / "diagnostics.csv")
    fig, _ = figures.diagnostics(diag)
    plt.show()
    marg = diag[(diag["model"] == "primary")
                & (diag["plot"] == "marginal_residual_vs_fitted")]
    if len(marg):
        z = (marg["y"] / marg["se"]).abs()
        outside = int((z > 1.96).sum())
        display(Markdown(
            f"Marginal residuals: {len(marg) - outside} of {len(marg)} bins (of "
            f"{int(marg['n'].min()):,} to {int(marg['n'].max()):,} sessions each) have a 95% "
            f"interval that includes zero; by chance alone about {0.05 * len(marg):.0f} of "
            f"{len(marg)} would not. The largest mean residual is "
            f"{marg['y'].abs().max():.2f} points."))
    else:
        display(Markdown("`results/diagnostics.csv` has no marginal residuals (it was "
                         "written by an older `fit` step); rerun `dvc repro fit`."))

# %% [markdown]
# ## Secondary models
#
# The analysis plan lists seven groups of secondary models. Each is specified in
# `pipeline/models.yaml`; the descriptions below are read from there. p-values are
# on Satterthwaite degrees of freedom (lmerTest's method, named beside each table);
# comparisons between models are likelihood-ratio tests on maximum-likelihood
# refits (REML likelihoods cannot compare models with different fixed effects).

# %%
plan = load_specs()
described = {c.name: c.description for c in plan.comparisons}
lr = pd.read_csv(results / "lr_tests.csv")
conf = float(params["model"].get("conf_level", 0.95))


def section(models: list[str]) -> None:
    """Show the description, fit status and fixed effects of some models."""
    for name in models:
        spec = plan.get(name)
        row = stats[stats["model"] == name]
        status = row["status"].iloc[0] if len(row) else "not fitted"
        display(Markdown(f"**{spec.title}.** {spec.description}"))
        if status not in ("fitted", "singular"):
            reason = row["reason"].iloc[0] if len(row) else ""
            if not isinstance(reason, str) or not reason:
                reason = row["warning"].iloc[0] if len(row) else ""
            label = status if status in ("not converged", "skipped") else "not estimable"
            display(Markdown(f"*{label}: {reason if isinstance(reason, str) else ''}*"))
            continue
        simple = row["simplification"].iloc[0]
        if isinstance(simple, str) and simple:
            display(Markdown(f"*Simplified: {simple}.*"))
        if status == "singular":
            display(Markdown("*Singular fit: a variance is estimated at zero.*"))
        display(styled(coefficient_table(coefs, [name], conf)))


def comparisons(names: list[str]) -> None:
    """Show likelihood-ratio tests by name."""
    display(styled(lr_table(lr[lr["comparison"].isin(names)], described)))


# %% [markdown]
# ### 1. How much of wellbeing lies with therapists and with clients?
#
# The unconditional growth model has time only. Its intraclass correlations (ICC) say what
# share of the variance in wellbeing lies between therapists and between clients.

# %%
g = stats[stats["model"] == "growth"].iloc[0]
if g["status"] in ("fitted", "singular"):
    display(Markdown(
        f"Therapists account for **{g['icc_therapist']:.0%}** of the variance in wellbeing "
        f"and clients (within therapists) for **{g['icc_client']:.0%}**; the rest varies "
        "from session to session."
    ))
section(["growth"])
comparisons(["alliance_vs_growth", "total_vs_growth"])

# %% [markdown]
# ### 2. Total alliance
#
# The mean of goal, task and bond, split into within and between in the same way.
# The comparison tests whether the three subscales predict better than their mean.

# %%
section(["total_alliance"])
comparisons(["subscales_vs_total"])

# %% [markdown]
# ### 3. Each subscale alone
#
# Goal, task and bond each predict wellbeing on their own here (without the other two), so
# their effects include what they share. Three tests of within-client effects are made, so
# their p-values are Holm-adjusted (column *p (Holm)*).

# %%
section(["goal_only", "task_only", "bond_only"])
comparisons(["goal_vs_all", "task_vs_all", "bond_vs_all"])

# %% [markdown]
# ### 4. Does the alliance predict wellbeing at the *next* session?
#
# A within-client effect at the same session cannot say which came first. The prospective
# model predicts wellbeing from the alliance at the client's previous session, adjusting
# for wellbeing at that session (Falkenström et al., 2013). **Caution:** a lagged outcome
# next to a random client intercept is biased when each client has few sessions (Nickell,
# 1981), so the coefficient of previous wellbeing is too small and the alliance
# coefficients may be off as well.

# %%
section(["lagged"])

# %% [markdown]
# ### 5. Where does the alliance live?
#
# Three-level models with no predictors split each subscale's variance into a therapist,
# a client (within therapist) and a session part. Baldwin, Wampold and Imel (2007) found
# that the therapist part of the alliance, not the client part, predicted outcome; the last
# model splits total alliance in that way.

# %%
ok_models = set(stats.loc[stats["status"].isin(["fitted", "singular"]), "model"])
levels = varcomp[varcomp["model"].str.startswith("alliance_levels_")
                 & varcomp["model"].isin(ok_models)].copy()
levels["subscale"] = levels["model"].str.replace("alliance_levels_", "", regex=False)
levels["share"] = levels["variance"] / levels.groupby("model")["variance"].transform("sum")
shares = levels.pivot(index="subscale", columns="component", values="share")
shares = shares.rename(columns={"therapist": "Therapist", "client": "Client (within therapist)",
                                "residual": "Session"})
shares.index = [figures.label(s) for s in shares.index]
display(styled(shares.rename_axis("Subscale").reset_index()).format(
    {c: "{:.0%}" for c in shares.columns}))
section(["therapist_vs_client"])
comparisons(["therapist_vs_client_parts"])

# %% [markdown]
# ### 6. Does the within-client effect depend on the approach or the modality?
#
# Interactions of the within-client alliance with the therapist's approach and with the
# modality (in person, video), tested together against the model without them. These are
# fitted only when the clients file has these covariates.

# %%
section(["moderation_approach", "moderation_modality"])
comparisons(["moderation_approach", "moderation_modality"])

# %% [markdown]
# The sensitivity analyses (plan group 7) have their own report, `sensitivity.html`.

# %%
# The works this report cites (docs/references.yaml).
from IPython.display import Markdown, display

from pipeline.references import reference_list

display(Markdown(reference_list(
    ["curran_bauer_2011", "falkenstrom_2013", "nickell_1981", "baldwin_2007"])))
