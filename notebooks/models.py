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
# # Do goal, task and bond predict the outcome?
#
# **In short.** This report shows the mixed models of the analysis plan
# (`docs/analysis-plan.md`). Every number is read from `results/`, where the pipeline's
# `fit` step wrote it.

# %% [markdown] tags=["needs-outcome"]
# The pre-registered primary model predicts the outcome at each session from the
# client's goal, task and bond scores, split into a *within-client* part (is a client
# better off in sessions where their alliance is higher than usual for them?) and a
# *between-client* part (are clients with a stronger alliance on average better off?).
# Then come the secondary models, and the alliance itself: where it lives, how it changes
# over sessions and how much therapists differ.

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.diagnostics import marginal_words
from pipeline.instruments import load_instrument
from pipeline.models import load_specs
from pipeline.models.lags import far_words, gap_words
from pipeline.models.results import read_results
from pipeline.report import (
    alliance_metric,
    data_notice,
    escape,
    has_outcome,
    not_fitted_words,
    open_project,
    outcome_noun,
    outcome_reading,
    reason_words,
    time_zero_words,
    together,
)
from pipeline.score import outcome_range
from pipeline.tables import (
    alliance_change_table,
    alliance_levels_table,
    bootstrap_table,
    coefficient_table,
    counted,
    format_df,
    format_num,
    format_r,
    lr_not_tested,
    lr_table,
    percent,
    styled,
    term_label,
    variance_table,
    with_interval,
)

root, params = open_project(params_file)
display(Markdown(data_notice(params)))
cfg = params["instruments"]
with_outcome = has_outcome(params)
outcome = load_instrument(cfg["outcome"], cfg.get("paths") or []) if with_outcome else None
outcome_name = escape(outcome.name) if outcome is not None else "the outcome"
higher_is_better = bool(cfg.get("outcome_higher_is_better", True))
noun = outcome_noun(outcome, higher_is_better)          # e.g. wellbeing, depression
label_noun = outcome_noun(outcome, higher_is_better, escaped=False)   # figure axes
alliance_inst = load_instrument(cfg["alliance"], cfg.get("paths") or [])
results = root / "results"
figures.apply_style()
tables = read_results(results)
coefs, stats = tables["coefficients"], tables["fit_statistics"]
varcomp = tables["variance_components"]
conf = float(params["model"].get("conf_level", 0.95))
plan = load_specs()


def reason_of(name: str) -> str:
    """Status and reason of a model that gave no numbers to read (escaped)."""
    row = stats[stats["model"] == name]
    if row.empty:
        return "not fitted"
    return escape(not_fitted_words(*row[["status", "reason", "warning"]].iloc[0]))


if not with_outcome:
    outcome_models = [m.name for m in plan.models if "wellbeing" in m.formula]
    display(Markdown(
        "**There is no outcome in these data.** No outcome file is named (`data.outcome` in "
        "`params.yaml` is empty), so this report cannot say whether the alliance goes with "
        "any outcome: the "
        f"{len(outcome_models)} models of the outcome in `pipeline/models.yaml` (the primary "
        "model, the secondary and moderation models, the sensitivity models) are skipped, "
        "and so are their sections. What follows is the alliance itself, as the clients "
        "rated it: where it lives, how it changes over sessions, how much therapists differ"
        + (" and how client and therapist ratings agree."
           if (results / "describe" / "rater_agreement.csv").is_file()
           and len(pd.read_csv(results / "describe" / "rater_agreement.csv")) else ".")))

# %% [markdown] tags=["needs-outcome"]
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
# It is a *mixed* model: besides these *fixed effects* (one number each for everybody), it
# lets therapists and clients differ from the average through *random effects*, whose
# spread (variance) is estimated rather than one number per person.

# %% tags=["needs-outcome"]
display(Markdown(
    f"Each coefficient is the expected change in {noun} (points on the {outcome_name}) for "
    "one point more on the subscale, holding the other subscales and time constant. "
    "`time` = session − 1. " + outcome_reading(outcome, higher_is_better)))

# %% tags=["needs-outcome"]
primary = coefs[coefs["model"] == "primary"].copy()
pstats = stats[stats["model"] == "primary"].iloc[0]
primary_ok = pstats["status"] in ("fitted", "singular")
if not primary_ok:
    why = reason_words(pstats["reason"]) or reason_words(pstats["warning"])
    head = ("could not be estimated on these data" if pstats["status"] != "not converged"
            else "did not converge on these data (its numbers are not to be read)")
    display(Markdown(
        f"**The primary model {head}{':' if why else '.'}** "
        + (f"{escape(why)}. " if why else "")
        + "The sections that read its numbers (the intercept and time, the within- and "
        "between-client effects, the variance components and their bootstrap intervals, "
        "the model checks) are left out; the secondary models follow, each with its own "
        "status."))
else:
    display(Markdown(
        f"**Primary model** fitted by {'REML' if pstats['reml'] else 'ML'} on "
        f"{counted(pstats['n_obs'], 'session')} of {counted(pstats['n_clients'], 'client')} "
        f"and {counted(pstats['n_therapists'], 'therapist')}. Optimizer: `{pstats['optimizer']}`; "
        "converged (lme4's checks: scaled gradient, Hessian positive definite)."
        + (" **Singular fit**: a variance is estimated at zero (flagged, numbers usable)."
           if pstats["status"] == "singular" else "")
        + (f" Simplified: {escape(pstats['simplification'])}."
           if isinstance(pstats["simplification"], str) and pstats["simplification"] else "")
    ))
    comps = set(varcomp.loc[varcomp["model"] == "primary", "component"])
    random_parts = [words for key, words in (
        ("therapist", "a random intercept for each therapist (some therapists' clients "
                      "score higher on average)"),
        ("client", "one for each client (clients of the same therapist differ)"
         if "therapist" in comps else
         "a random intercept for each client (some clients score higher on average)"),
        ("client_time", f"a random slope on time for each client ({noun} changes at "
                        "different speeds)"
         + (", correlated with the client's intercept" if "cov_client_client_time" in comps
            else ", uncorrelated with the client's intercept")))
        if key in comps]
    display(Markdown(
        "Random part: " + ("; ".join(random_parts) if random_parts else "none")
        + f". A coefficient is per point of the alliance's {alliance_metric(alliance_inst)}."))
    display(styled(coefficient_table(coefs, ["primary"], conf)))
    df_method = str(primary["df_method"].iloc[0])
    ci_words = f"*{percent(conf)} CI*: {percent(conf)} confidence interval of *b* (the estimate)"
    dfs = primary.dropna(subset=["df"])
    # the highest level the model kept (one therapist: the therapist level is dropped)
    top = ("therapist" if "therapist" in set(varcomp.loc[varcomp["model"] == "primary",
                                                         "component"]) else "client")
    if len(dfs):
        low, high = dfs.loc[dfs["df"].idxmin()], dfs.loc[dfs["df"].idxmax()]
        how = ("the approximation of Satterthwaite (1946), as lmerTest computes it "
               "(Kuznetsova et al., 2017)" if df_method.startswith("Satterthwaite") else
               "the method of Kenward & Roger (1997), as lmerTest and pbkrtest compute it "
               "(Kuznetsova et al., 2017; Halekoh & Højsgaard, 2014)"
               if df_method.startswith("Kenward") else escape(df_method))
        display(Markdown(
            f"{ci_words}; *SE*: its standard error; *p*: the two-sided test of b = 0 "
            f"against a t distribution with *df* degrees of freedom, estimated by {how}. "
            "The df say how much independent information a term rests on: the intercept "
            f"varies with the {top}s, so its df are near the number of {top}s, "
            "while a within-client effect is seen in every session. Here "
            f"{term_label(low['term'])} has df = {format_df(low['df'])} and "
            f"{term_label(high['term'])} df = {format_df(high['df'])} "
            f"({counted(pstats['n_therapists'], 'therapist')}, "
            f"{counted(pstats['n_clients'], 'client')}, {counted(pstats['n_obs'], 'session')})."))
    else:
        display(Markdown(
            f"{ci_words}; *SE*: its standard error; *p*: the two-sided test of b = 0 "
            f"({escape(df_method)}: a normal reference distribution, no small-sample "
            "degrees of freedom)."))

# %% [markdown] tags=["needs-outcome", "needs-primary"]
# ### Reading the intercept and time
#
# Every predictor is centred (`time` = session − 1; a between-client part is 0 for a client
# at the mean of the client means, a within-client part is 0 at the client's own mean), so
# the intercept is a prediction for a concrete, typical case rather than for an impossible
# "alliance of zero".

# %% tags=["needs-outcome", "needs-primary"]
if primary_ok:
    trajectories = pd.read_csv(results / "describe" / "trajectories.csv")
    term = primary.set_index("term")
    b0, b_time = term.loc["Intercept"], term.loc["time"] if "time" in term.index else None
    level = f"{percent(float(b0['conf_level']))}"
    scale = ""
    if outcome is not None:
        lo, hi = outcome_range(outcome)
        better = (outcome.direction == "higher_better"
                  or bool(cfg.get("outcome_higher_is_better", True)))
        scale = (f" (scored {lo:g}\u2013{hi:g}, higher = "
                 f"{'better' if better else 'worse'})")
    b, interval, _ = with_interval(b0["estimate"], b0["conf_low"], b0["conf_high"])
    text = (f"The intercept, **{b}** ({level} CI {interval}), is the expected "
            f"score on the {outcome_name}{scale} {time_zero_words(trajectories)} of a client "
            "whose alliance is at the average client's level and at their own usual level, "
            "seen by a typical therapist (all random effects at 0).")
    if b_time is not None:
        b, interval, _ = with_interval(b_time["estimate"], b_time["conf_low"],
                                       b_time["conf_high"])
        text += (f" From one session to the next, {noun} is expected to change by "
                 f"**{b}** points ({level} CI {interval}) for such a client.")
    display(Markdown(text))

# %% [markdown] tags=["needs-outcome", "needs-primary"]
# ## Within- versus between-client effects
#
# The plot sets each subscale's within-client effect beside its between-client effect,
# with their confidence intervals.

# %% tags=["needs-outcome", "needs-primary"]
if primary_ok:
    display(Markdown(f"The bars are {percent(conf)} intervals; an interval that does not cross "
                     f"zero is an effect that differs from zero at the {percent(1 - conf)} level."))
    figures.show(*figures.coefficient_plot(coefs, outcome_label=label_noun),
                 "coefficients_within_between", outcome=label_noun)

# %% [markdown] tags=["needs-outcome", "needs-primary"]
# ## What the effects mean in points of the outcome

# %% tags=["needs-outcome", "needs-primary"]
if primary_ok:
    display(Markdown(
        f"The lines show how much higher the model predicts {noun} to be for a session whose "
        "alliance is *x* points above the client's usual level (within), or for a client "
        "whose average alliance is *x* points above the average client (between), with "
        "everything else held constant. The bands are the confidence intervals of the lines."
        + ("" if outcome is None or outcome.direction == "higher_better"
           or higher_is_better else
           " Higher is worse here: a line that falls means a better outcome.")))
    figures.show(*figures.predicted_wellbeing(coefs, outcome_label=label_noun),
                 "predicted_wellbeing", outcome=label_noun)

# %% [markdown] tags=["needs-outcome", "needs-primary"]
# ## How much varies between therapists, clients and sessions
#
# Variance components of the primary model. *Therapist intercept* and *Client intercept* are
# the variances of the random intercepts (how much the outcome differs between therapists, and
# between clients of the same therapist, beyond what the predictors explain), *Client slope
# on time* the variance of the clients' own slopes over sessions, *Residual (session)* what
# is left from session to session.

# %% tags=["needs-outcome", "needs-primary"]
if primary_ok:
    display(styled(variance_table(varcomp, ["primary"])))

# %% [markdown] tags=["needs-outcome", "needs-primary"]
# ### How sure are these variance components? A parametric bootstrap
#
# A variance estimated from the therapists of one study is uncertain, and its sampling
# distribution is skewed (a variance cannot go below zero), so a symmetric "estimate ± 2
# SE" interval misleads. The *parametric bootstrap* (lme4's `bootMer`; Bates et al., 2015)
# simulates many new data sets from the fitted model, on the same clients and sessions,
# refits the model to each, and takes the middle of the refitted values (the percentiles
# of the confidence level) as the interval. It gives intervals for:
#
# - the **standard deviations** of the random effects and the residual;
# - the **intraclass correlations** (ICC): the therapist's (or client's) share of the
#   variance of the outcome at the first session, e.g. ICC therapist = therapist variance /
#   (therapist + client + residual variance);
# - **R²** (Nakagawa & Schielzeth, 2013): *marginal* R² is the share of the variance of
#   the outcome explained by the fixed effects (time and the alliance), *conditional* R² the
#   share explained by the fixed and the random effects together.

# %% tags=["needs-outcome", "needs-primary"]
boot_file = results / "bootstrap.csv"
boot_all = pd.read_csv(boot_file) if boot_file.is_file() else pd.DataFrame()
# the rows of the primary model (the stage also bootstraps the alliance-levels models)
boot = boot_all[boot_all["model"] == "primary"] if len(boot_all) else boot_all
if primary_ok and len(boot):
    display(styled(bootstrap_table(boot)))
    reps, failed = int(boot["replications"].iloc[0]), int(boot["failed"].iloc[0])
    icc = boot.set_index("quantity").loc["icc_therapist"]
    display(Markdown(
        f"Percentile intervals from {reps:,} simulated data sets ({failed} refits failed "
        f"and are left out; {int(boot['singular'].iloc[0])} put a variance at zero). "
        f"In the primary model (with the alliance and time as predictors), therapists "
        f"account for {percent(icc['estimate'])} of the variance left at the first session, and "
        f"data like these are compatible with anything from {percent(icc['conf_low'])} to "
        f"{percent(icc['conf_high'])}. (The growth model below, without the alliance, gives "
        f"the shares of {noun} itself.)"))
elif primary_ok:
    boot_model = str((params.get("bootstrap") or {}).get("model", "primary"))
    boot_row = stats[stats["model"] == boot_model]
    simplified = (boot_row["simplification"].iloc[0]
                  if len(boot_row) and "simplification" in boot_row else "")
    if isinstance(simplified, str) and simplified:
        why = (f"the model `{escape(boot_model)}` could only be fitted after a "
               f"simplification ({escape(simplified)}), and the bootstrap refits a model "
               "exactly as specified, never a simplified one")
    elif len(boot_row) and boot_row["status"].iloc[0] not in ("fitted", "singular"):
        why = f"the model `{escape(boot_model)}` is {reason_of(boot_model)}"
    else:
        why = ("`results/bootstrap.csv` is absent or empty (the `bootstrap` stage writes "
               "it; its log line says why)")
    display(Markdown(f"No bootstrap intervals: {why}."))

# %% [markdown] tags=["needs-outcome", "needs-primary"]
# ### Does the model fit?
#
# If the model is right, the residuals and the predicted random effects look roughly
# normal: the points of each Q–Q plot (top row) lie near the line.
#
# The bottom row asks whether the model misses a curve, with two plots of the mean residual
# in bins of the fitted values (each bin pools the sessions with similar fitted values):
#
# - **Conditional residuals** (left): the observed outcome minus the full prediction, which
#   includes each client's and therapist's predicted random effects. These predictions are
#   *shrunk* towards zero: a client with few sessions is given only part of their own
#   deviation from the average (the rest could be chance), and the remaining part stays in
#   that client's residuals. Clients predicted high are, on average, even higher than
#   predicted, and clients predicted low even lower, so this line **rises even when the
#   model is exactly right**. Its slope says how much shrinkage there is, not that the model
#   is wrong.
# - **Marginal residuals** (right): the observed outcome minus the fixed part alone
#   (intercept, time and the alliance terms), binned by that fixed-part prediction. No
#   random effect is predicted here, and the model assumes the random effects are unrelated
#   to the predictors, so **if the fixed part is right every bin's mean lies at zero**, up to
#   chance. The bars are 95% intervals computed from the model (sessions of one client are
#   correlated, which widens them). A run of bins away from zero, or a bend, means the fixed
#   part misses something: a curve in time, a ceiling of the outcome scale, an interaction.
#
# Each point is an aggregate (a quantile or a bin of sessions), never a single client.

# %% tags=["needs-outcome", "needs-primary"]
if primary_ok:
    diag = pd.read_csv(results / "diagnostics.csv")
    figures.show(*figures.diagnostics(diag, outcome_label=label_noun), "diagnostics_primary")
    marg = diag[(diag["model"] == "primary")
                & (diag["plot"] == "marginal_residual_vs_fitted")]
    if len(marg):
        display(Markdown(marginal_words(marg)))
    else:
        display(Markdown("`results/diagnostics.csv` has no marginal residuals (it was "
                         "written by an older `fit` step); rerun `dvc repro fit`."))

# %% tags=["needs-outcome"]
# the secondary models' helpers (a cell without output: it stands before the section
# heading, whose own part is the tables below)
described = {c.name: c.description for c in plan.comparisons}
lr = pd.read_csv(results / "lr_tests.csv")


def section(models: list[str]) -> None:
    """Show the description, fit status and fixed effects of some models."""
    for name in models:
        spec = plan.get(name)
        row = stats[stats["model"] == name]
        status = row["status"].iloc[0] if len(row) else "not fitted"
        display(Markdown(f"**{spec.title}.** {spec.description}"))
        if status not in ("fitted", "singular"):
            display(Markdown(f"*{reason_of(name)}*"))
            continue
        simple = row["simplification"].iloc[0]
        if isinstance(simple, str) and simple:
            display(Markdown(f"*Simplified: {escape(simple)}.*"))
        if status == "singular":
            display(Markdown("*Singular fit: a variance is estimated at zero.*"))
        display(styled(coefficient_table(coefs, [name], conf)))


def comparisons(names: list[str]) -> None:
    """Show likelihood-ratio tests by name; say which could not be made, and why."""
    chosen = lr[lr["comparison"].isin(names)]
    if chosen["statistic"].notna().any():
        display(styled(lr_table(chosen, described)))
    untested = lr_not_tested(chosen, described, stats)
    if untested:
        display(Markdown(" ".join(escape(line) for line in untested)))


# %% [markdown] tags=["needs-outcome"]
# ## Secondary models
#
# The analysis plan lists seven groups of secondary models. Each is specified in
# `pipeline/models.yaml`; the descriptions below are read from there. Their tables read
# like the primary model's (same degrees-of-freedom method). Comparisons between models
# are likelihood-ratio tests on maximum-likelihood refits (REML likelihoods cannot compare
# models with different fixed effects): χ² is twice the difference of the
# log-likelihoods, *df* the number of parameters the fuller model adds, and a small *p*
# says the fuller model fits better than chance would make it. AIC (Akaike's information
# criterion) weighs fit against the number of parameters; the lower of the two is the
# better trade-off.

# %% [markdown] tags=["needs-outcome"]
# ### 1. How much of the outcome lies with therapists and with clients?
#
# The unconditional growth model has time only. Its intraclass correlations (ICC) say what
# share of the variance in the outcome lies between therapists and between clients.

# %% tags=["needs-outcome"]
g = stats[stats["model"] == "growth"].iloc[0]
if g["status"] in ("fitted", "singular") and pd.isna(g["icc_therapist"]):
    display(Markdown(
        f"The therapists' share of the variance in {noun} cannot be estimated: the model "
        "has no therapist level (see *Simplified* below). Clients account for "
        f"**{percent(g['icc_client'])}**; the rest varies from session to session."))
elif g["status"] in ("fitted", "singular"):
    display(Markdown(
        f"Therapists account for **{percent(g['icc_therapist'])}** of the variance in {noun} "
        f"and clients (within therapists) for **{percent(g['icc_client'])}**; the rest varies "
        "from session to session."
    ))
section(["growth"])
comparisons(["alliance_vs_growth", "total_vs_growth"])

# %% [markdown] tags=["needs-outcome"]
# ### 2. Total alliance
#
# The mean of goal, task and bond, split into within and between in the same way.
# The comparison tests whether the three subscales predict better than their mean.

# %% tags=["needs-outcome"]
section(["total_alliance"])
comparisons(["subscales_vs_total"])

# %% [markdown] tags=["needs-outcome"]
# ### 3. Each subscale alone
#
# Goal, task and bond each predict the outcome on their own here (without the other two), so
# their effects include what they share. Three tests of within-client effects are made, so
# their p-values are Holm-adjusted (Holm, 1979; column *p (Holm)*): the smallest p is
# multiplied by 3, the next by 2, the largest by 1 (each at least the one before),
# keeping the chance of any false positive among the three at α.

# %% tags=["needs-outcome"]
section(["goal_only", "task_only", "bond_only"])
comparisons(["goal_vs_all", "task_vs_all", "bond_vs_all"])

# %% [markdown] tags=["needs-outcome"]
# ### 4. Does the alliance predict the outcome at the *next* session?
#
# A within-client effect at the same session cannot say which came first. The prospective
# model predicts the outcome from the alliance at the client's previous session, adjusting
# for the outcome at that session (Falkenström et al., 2013). **Caution:** a lagged outcome
# next to a random client intercept is biased when each client has few sessions (Nickell,
# 1981), so the coefficient of the previous outcome is too small and the alliance
# coefficients may be off as well.

# %% tags=["needs-outcome"]
section(["lagged"])
lag_row = stats[stats["model"] == "lagged"]
# results written before the lag_* columns existed have no gaps to describe
if (len(lag_row) and lag_row["status"].iloc[0] in ("fitted", "singular")
        and pd.notna(lag_row.iloc[0].get("lag_far"))):
    lag_row = lag_row.iloc[0]
    far = far_words(lag_row, params["model"].get("lag"))
    display(Markdown(
        "Each row of this model is a *pair*: a session and the client's previous "
        "*observed* session (the last earlier session with both questionnaires), however "
        "far back it was. "
        + gap_words(lag_row, int(lag_row["n_obs"]), int(params["report"]["min_cell"]))
        + (f" **Read these coefficients with care.** {far}" if far else "")))

# %% [markdown] tags=["needs-outcome"]
# ### 5. Therapist mean versus client-within-therapist alliance
#
# Baldwin, Wampold and Imel (2007) found that the therapist part of the alliance (how
# a therapist's clients rate the alliance on average), not the client part, predicted
# outcome. This model splits the between-client part of total alliance in that way; how
# much of the alliance lies with therapists at all is in the next section.

# %% tags=["needs-outcome"]
section(["therapist_vs_client"])
comparisons(["therapist_vs_client_parts"])

# %% [markdown] tags=["needs-outcome"]
# ### 6. Does the within-client effect depend on the approach or the modality?
#
# Interactions of the within-client alliance with the therapist's approach and with the
# modality (in person, video), tested together against the model without them. These are
# fitted only when the clients file has these covariates.

# %% tags=["needs-outcome"]
section(["moderation_approach", "moderation_modality"])
comparisons(["moderation_approach", "moderation_modality"])

# %% [markdown] tags=["needs-outcome"]
# The sensitivity analyses (plan group 7) have their own report, `sensitivity.html`.

# %% [markdown]
# ## The alliance itself: where it lives, how it changes, how therapists differ
#
# These models describe the client-rated alliance alone, without any outcome. The
# *three-level models without predictors* (`alliance_levels_*` in `pipeline/models.yaml`)
# split each subscale's variance into three parts: **therapist** (some therapists'
# clients rate the alliance higher than others'), **client** (clients of the same
# therapist differ), and **session** (a client's rating moves from session to session,
# together with measurement error). Each part's *share* is its variance over the sum. A
# large client share and a small therapist share is the usual finding: the alliance is
# mostly something between a particular client and their therapist.

# %%
levels = pd.read_csv(results / "alliance_levels.csv")
change = pd.read_csv(results / "alliance_change.csv")
readable = levels[levels["status"].isin(["fitted", "singular"])]
metric = alliance_metric(alliance_inst)
if readable.empty:
    display(Markdown("No alliance model could be estimated. "
                     + together([figures.label(k) for k in levels["subscale"]],
                                [reason_of(m) for m in levels["model"]]) + "."))
else:
    display(Markdown(f"Scores: {metric}."))
    display(styled(alliance_levels_table(levels)))
    figures.show(*figures.alliance_shares(levels), "alliance_shares")
    lines = []
    for r in readable.itertuples():
        where = (f"{percent(r.share_therapist)} between therapists, "
                 if pd.notna(r.share_therapist) else "")
        lines.append(f"- **{figures.label(r.subscale)}**: {where}{percent(r.share_client)} between "
                     f"clients{' of the same therapist' if where else ''} and "
                     f"{percent(r.share_session)} from session to session (mean "
                     f"{format_num(r.mean)}; {counted(r.n_obs, 'session')}).")
    for r in levels[~levels["status"].isin(["fitted", "singular"])].itertuples():
        lines.append(f"- **{figures.label(r.subscale)}**: {reason_of(r.model)}.")
    display(Markdown("\n".join(lines)))

# %% [markdown]
# **How sure are these shares?** The parametric bootstrap (see `bootstrap:` in
# `params.yaml`; `bootstrap.alliance_levels`) refits each of these models to data sets
# simulated from it and gives percentile intervals for the therapist and client shares.

# %%
boot_file = results / "bootstrap.csv"
boot = pd.read_csv(boot_file) if boot_file.is_file() else pd.DataFrame()
shown = (boot[boot["model"].astype(str).str.startswith("alliance_levels_")] if len(boot)
         else pd.DataFrame(columns=["model"]))
lines = []
for model_name, rows in shown.groupby("model", sort=False):
    q = rows.set_index("quantity")
    k = str(model_name).removeprefix("alliance_levels_")
    level = float(rows["conf_level"].iloc[0])
    parts = [f"{name} {percent(q.loc[key, 'estimate'])} ({percent(level)} interval "
             f"{percent(q.loc[key, 'conf_low'])} to {percent(q.loc[key, 'conf_high'])})"
             for key, name in (("icc_therapist", "therapist share"),
                               ("icc_client", "client share")) if key in q.index]
    lines.append(f"- **{figures.label(k)}**: " + "; ".join(parts) + f", from "
                 f"{int(rows['replications'].iloc[0]):,} simulated data sets "
                 f"({int(rows['failed'].iloc[0])} refits failed and are left out).")
if lines:
    display(Markdown("\n".join(lines)))
    missing = [k for k in readable["subscale"]
               if f"alliance_levels_{k}" not in set(shown["model"].astype(str))]
    if missing:
        display(Markdown("No intervals for " + ", ".join(figures.label(k) for k in missing)
                         + ": the bootstrap refuses a model that had to be simplified "
                         "(for example without the therapist level)."))
elif readable.empty:
    display(Markdown("No intervals: there is no share to bootstrap, since no alliance model "
                     "could be estimated on these data (see above)."))
else:
    levels_on = bool(params.get("bootstrap", {}).get("alliance_levels", True))
    display(Markdown(
        ("No intervals: the alliance models could not be bootstrapped on these data (a "
         "model that had to be simplified, e.g. without the therapist level, is not "
         "bootstrapped)." if levels_on else
         "Not in this run: `bootstrap.alliance_levels` is false. Set it to true for "
         "intervals of the shares.")
        + (" The shares above are point estimates"
           + ("; with few therapists the therapist share in particular is uncertain."
              if readable["share_therapist"].notna().any() else ".")
           if len(readable) else "")))

# %% [markdown]
# ### How much do therapists differ?
#
# The therapist variance is easier to read as a range. If therapists' mean ratings vary
# around the overall mean with the estimated therapist standard deviation (SD), the middle
# 95% of therapists have a mean rating within mean &plusmn; 1.96 SD (for a typical mix of
# clients). These are not the ratings of any therapist in the data: no therapist's own
# mean is shown. Baldwin, Wampold and Imel (2007) found that therapist differences in the
# alliance, more than client differences, went with outcome.

# %%
if not readable.empty:
    lines = []
    for r in readable.itertuples():
        name = figures.label(r.subscale)
        if pd.isna(r.share_therapist):
            n_t = r.n_therapists
            lines.append(
                f"- **{name}**: therapist differences cannot be estimated: "
                + ("all clients have one therapist as far as the data say (no therapist id, "
                   "or one therapist), so the model has no therapist level."
                   if pd.notna(n_t) and int(n_t) == 1 else
                   f"the model has no therapist level ({escape(r.simplification)})."))
        elif r.var_therapist <= 0:
            lines.append(
                f"- **{name}**: the therapist variance is estimated at zero (a singular fit): "
                "these data show no differences between therapists beyond those between "
                "their clients. With few therapists that is weak evidence that there are "
                "none.")
        else:
            lines.append(
                f"- **{name}**: therapist SD {format_num(r.sd_therapist)} points; the middle "
                f"95% of therapists' mean ratings lie between "
                f"{format_num(r.therapist_mean_low)} and {format_num(r.therapist_mean_high)} "
                f"(overall mean {format_num(r.mean)}).")
    display(Markdown(f"On the {metric}:\n\n" + "\n".join(lines)))
else:
    display(Markdown("No range of therapists' mean ratings can be given: no alliance model "
                     "could be estimated on these data (see above)."))

# %% [markdown]
# ### The alliance over sessions
#
# Growth models (`alliance_time_*`): each subscale on `time` (session &minus; 1), with the
# primary model's random part (therapist and client intercepts, and each client's own
# slope on time). *Change per session* is the average slope; the clients' own slopes
# vary around it with the estimated SD, and the last column gives the middle 95% of them.

# %%
ok_change = change[change["status"].isin(["fitted", "singular"])]
if ok_change.empty:
    display(Markdown("No growth model of the alliance could be estimated. "
                     + together([figures.label(k) for k in change["subscale"]],
                                [reason_of(m) for m in change["model"]]) + "."))
else:
    display(styled(alliance_change_table(change)))
    level = f"{percent(float(ok_change['conf_level'].iloc[0]))}"
    lines = []
    for r in ok_change.itertuples():
        clear = r.conf_low > 0 or r.conf_high < 0
        way = "rises" if r.slope > 0 else "falls"
        slope, interval, digits = with_interval(r.slope, r.conf_low, r.conf_high)
        lines.append(
            f"- **{figures.label(r.subscale)}**: "
            + (f"{way} by {format_num(abs(r.slope), digits)} points per session on average"
               if clear else f"estimated change {slope} points per session, "
               "but the interval includes zero, i.e. no change")
            + f" ({level} CI {interval}).")
    display(Markdown("\n".join(lines)))
    sessions = ok_change["simplification"].fillna("").str.contains("client random slope")
    if sessions.any():
        display(Markdown(
            "No client has three or more rated sessions, so each client's own slope cannot "
            "be told apart from session-to-session noise: these models have one slope for "
            "all clients (the pre-fit checks dropped the client slope)."))

# %% [markdown]
# ### Client and therapist ratings
#
# When therapists rated the alliance too, their ratings are scored with the therapist
# form's key and compared with the client's rating of the same session. The full table,
# per session, is in the overview report; the models above use client ratings only.

# %%
agreement_file = results / "describe" / "rater_agreement.csv"
agreement = pd.read_csv(agreement_file) if agreement_file.is_file() else pd.DataFrame()
pooled = (agreement[(agreement["session"].astype(str) == "all")
                    & ~agreement["suppressed"].astype(bool)] if len(agreement) else agreement)
if pooled.empty:
    display(Markdown("Only clients rated the alliance (or too few sessions were rated by "
                     "both to show): there is no client-therapist agreement to report."))
else:
    level = f"{percent(float(params['model'].get('conf_level', 0.95)))}"
    lines = []
    for r in pooled.itertuples():
        higher = "higher" if r.mean_difference > 0 else "lower"
        _, interval, digits = with_interval(r.mean_difference, r.conf_low, r.conf_high)
        lines.append(
            f"- **{figures.label(r.scale)}**: clients rated "
            f"{format_num(abs(r.mean_difference), digits)} points {higher} than their "
            f"therapists ({level} CI {interval}); the two ratings correlate r = "
            f"{format_r(r.r)} over {counted(r.n_pairs, 'session')} of "
            f"{counted(r.n_clients, 'client')}.")
    display(Markdown(
        "\n".join(lines) + "\n\nSessions of one client are pooled as if independent, so "
        "the intervals are somewhat too narrow when clients have many sessions."))

# %%
# The works this report cites (docs/references.yaml).
from IPython.display import Markdown, display

from pipeline.references import reference_list

display(Markdown(reference_list(
    ["curran_bauer_2011", "falkenstrom_2013", "nickell_1981", "baldwin_2007",
     "kuznetsova_2017", "bates_2015", "nakagawa_schielzeth_2013", "holm_1979",
     *(["kenward_roger_1997", "halekoh_hojsgaard_2014"]
       if params["model"].get("df_method") == "kenward-roger" else ["satterthwaite_1946"])]
    if with_outcome else ["baldwin_2007"])))
