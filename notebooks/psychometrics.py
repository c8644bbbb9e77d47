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
# only; counts below `report.min_cell` are suppressed ('–'), and where the other counts and
# their total would give one back by subtraction, more are held back with it (*secondary
# suppression*).

# %% tags=["parameters"]
params_file = None  # path to params.yaml (None: the file of this project)

# %%
import pandas as pd
from IPython.display import Markdown, display

from pipeline import figures
from pipeline.instruments import Instrument, load_instrument
from pipeline.report import (
    data_notice,
    escape,
    open_project,
    outcome_description,
    outcome_key_text,
    outcome_label,
)
from pipeline.score import therapist_form
from pipeline.tables import format_int, format_r, percent, styled, yes_no

root, params = open_project(params_file)
display(Markdown(data_notice(params)))
results = root / "results" / "scoring"
min_cell = int(params["report"]["min_cell"])
figures.apply_style()
cfg = params["instruments"]
paths = cfg.get("paths") or []
alliance = load_instrument(cfg["alliance"], paths)
therapist = therapist_form(cfg)
has_outcome = bool(params["data"].get("outcome")) and bool(cfg.get("outcome"))
outcome = load_instrument(cfg["outcome"], paths) if has_outcome else None
ceiling_pct = float(params["psychometrics"].get("floor_ceiling_pct", 15))
#: Questionnaire names for readers (tables hold the registry keys).
names = {i.key: i.name for i in (alliance, therapist, outcome) if i is not None}


def named(frame: pd.DataFrame) -> pd.DataFrame:
    """A table with the questionnaire's name in place of its registry key."""
    if "instrument" not in frame.columns:
        return frame
    return frame.assign(instrument=frame["instrument"].map(lambda k: names.get(k, k)))


def apa_r(v: float) -> str:
    """A reliability or correlation without the leading zero; '–' when suppressed."""
    return "–" if pd.isna(v) else format_r(v)


def count(v: float) -> str:
    """A count as shown: blank counts were suppressed."""
    return f"< {min_cell}" if pd.isna(v) else format_int(v)


# %% [markdown]
# ## The scoring keys
#
# Keys are data, one YAML file per questionnaire under `pipeline/instruments/`. Item
# values are checked against the questionnaire's range *before* any item is reversed, so a
# blank reversed item stays blank instead of turning into an impossible score.


# %%
def describe_key(inst: Instrument, who: str) -> None:
    """Show one alliance form's key: items per subscale (R = reversed) and its rules."""
    keys = pd.DataFrame(
        [{"subscale": name, "items": ", ".join(
            f"{i}{'R' if i in inst.reversed else ''}" for i in items)}
         for name, items in inst.subscales.items()]
    )
    reversed_text = (
        f"reversed items {', '.join(str(i) for i in inst.reversed)} are scored as "
        f"{inst.item_min + inst.item_max:g} minus the answer" if inst.reversed
        else "no item is reversed")
    how = "item means" if inst.score == "mean" else "item sums"
    display(Markdown(
        f"**{escape(inst.name)}** (<code>{escape(inst.key)}</code>, {who}): "
        f"{inst.n_items} items answered {inst.item_min:g}\u2013{inst.item_max:g}, "
        f"subscales scored as {how} (R = reversed; {reversed_text}). "
        f"Key: {escape(inst.checked)}. "
        "Missing items: a subscale is scored when at most "
        f"{inst.missing.get('max_missing_per_subscale', 0)} of its items is blank (mean of "
        "the answered items), otherwise it is missing."
    ))
    display(styled(keys))


describe_key(alliance, "client ratings")
if therapist is not None:
    describe_key(therapist, "therapist ratings")

# %%
display(Markdown(outcome_description(outcome, bool(cfg.get("outcome_higher_is_better", True)))
                 + (f" {outcome_key_text(outcome)}" if outcome is not None else "")
                 + (" Raw sums are converted to the metric score with the published table."
                    if outcome is not None and outcome.conversion else "")))

# %% [markdown]
# ## How many scores were complete, prorated or missing

# %%
scoring = pd.read_csv(results / "scoring.csv")
cols = ["instrument", "scale", "n_rows", "n_complete", "n_prorated", "n_missing", "metric"]
scored = named(scoring[cols]).assign(  # "alliance_total (therapist)" too
    scale=lambda t: t["scale"].str.replace(r"^alliance_total\b", "total", regex=True)
    # the outcome column is called wellbeing whatever it measures: name it as the reports do
    .replace({"wellbeing": outcome_label(params, escaped=False)}))
styled(scored.rename(columns={"scale": "score", "n_rows": "forms", "n_complete": "complete",
                              "n_prorated": "prorated", "n_missing": "missing"})).format(
    {c: count for c in ["forms", "complete", "prorated", "missing"]})

# %% [markdown]
# ## Reliability
#
# **Cronbach's alpha** and **McDonald's omega (total)** say how strongly the items of a
# subscale hang together, from 0 to 1; above about .70 is usually taken as acceptable for
# research. Alpha assumes every item measures the subscale equally well; omega, from a
# one-factor model, does not. Computed on every returned form (all sessions together) and
# per session where at least `psychometrics.min_n_per_session` forms were returned, for
# each rater's form separately. Values agree with R's `psych` package (tests pin them).

# %%
rel_file = results / "reliability.csv"
fc_file = results / "floor_ceiling.csv"
if rel_file.is_file():
    rel = pd.read_csv(rel_file)
    overall = rel[rel["subset"] == "all"][["instrument", "scale", "n", "alpha",
                                           "omega_total", "note"]].fillna({"note": ""})
    # Reliabilities cannot exceed 1: APA writes them without the leading zero (.86).
    display(styled(named(overall).rename(columns={
        "n": "forms", "alpha": "Cronbach's \u03b1", "omega_total": "McDonald's \u03c9"})).format(
        {"forms": count, "Cronbach's \u03b1": apa_r, "McDonald's \u03c9": apa_r}, na_rep="–"))
    fc_all = pd.read_csv(fc_file)
    client_rel = rel[rel["instrument"] == alliance.key]
    client_fc = fc_all[fc_all["instrument"] == alliance.key]
    figures.show(*figures.reliability(client_rel, client_fc), "reliability")
    display(Markdown(
        f"Client ratings ({escape(alliance.name)}). Left: Cronbach's alpha at each session "
        "with enough forms (dashed line: .70). Right: the share of answers at the best "
        "score of each item, counted on the keyed direction (colour = subscale), "
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
# Client ratings; correlations over fewer than `report.min_cell` clients are suppressed.

# %%
corr = pd.read_csv(results / "subscale_correlations.csv")
corr = corr.drop(columns=[c for c in ("suppressed",) if c in corr.columns])
styled(corr.rename(columns={"scale_1": "subscale", "scale_2": "with", "n_obs": "sessions",
                            "n_clients": "clients"})).format(
    {"r": apa_r, "sessions": count, "clients": count}, na_rep="–")

# %% [markdown]
# ## Floor and ceiling
#
# Answers at the worst and the best score of each item, counted on the **keyed**
# direction: for a reversed item the best score is the lowest printed answer. An item is
# usually said to have a floor or ceiling effect when more than 15% of answers sit there
# (Terwee et al., 2007; `psychometrics.floor_ceiling_pct`).

# %%
if fc_file.is_file():
    fc = pd.read_csv(fc_file)
    show = named(fc[["instrument", "item", "scale", "reversed", "n", "n_floor", "pct_floor",
                     "n_ceiling", "pct_ceiling"]])
    show = show.assign(reversed=show["reversed"].map(yes_no))

    def pct(v: float) -> str:
        return "–" if pd.isna(v) else percent(v, "percent_table", scaled=True)

    display(styled(show.rename(columns={
        "n": "answers", "n_floor": "at worst", "pct_floor": "% at worst",
        "n_ceiling": "at best", "pct_ceiling": "% at best"})).format(
        {"answers": count, "at worst": count, "at best": count, "% at worst": pct,
         "% at best": pct}))
    for key, group in fc.groupby("instrument", sort=False):
        n_items = len(group)
        n_ceiling = int((group["pct_ceiling"] > ceiling_pct).sum())
        n_floor = int((group["pct_floor"] > ceiling_pct).sum())
        text = (f"{escape(names.get(key, key))}: {n_ceiling} of {n_items} items have more than "
                f"{ceiling_pct:g}% of answers at the best score, {n_floor} at the worst.")
        if n_ceiling > n_items / 2:
            text += (" The ratings crowd at the top: a ceiling hides differences among "
                     "clients who are all satisfied.")
        display(Markdown(text))
else:
    display(Markdown("The alliance data were pre-scored: no item-level counts."))

# %%
# The works this report cites (docs/references.yaml; the questionnaires used, too).
from IPython.display import Markdown, display

from pipeline.references import instrument_keys, reference_list

display(Markdown(reference_list(["cronbach_1951", "mcdonald_1999", "terwee_2007",
                                 *instrument_keys(params)])))
