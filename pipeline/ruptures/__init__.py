"""Alliance ruptures, repairs and endings, measured session by session (issue 12).

A *rupture* is a strain or breakdown in the collaboration between client and therapist;
*repair* is the work of addressing it. Post-session questionnaires do not observe either:
a sudden drop in a client's alliance rating, and its return, are *indicators* of a
rupture and its repair. This package finds such episodes under several published
criteria side by side and links them to outcome and to how therapy ended.

One concept per module:

``criteria``
    The named criteria as data (thresholds under ``ruptures:`` in ``params.yaml``) and
    the threshold each implies for a client's series.
``detect``
    The episodes of each series (client or therapist ratings; total, goal, task, bond)
    under the stated rules for missed sessions and the last sessions.
``windows``
    Each session's window of sessions in a flat table of all series, and sums over the
    windows that equal numpy's sums of each window alone (so detection runs over every
    series at once with the same numbers).
``summarise``
    Aggregates with small-cell suppression: prevalence, lengths, timing, repair,
    agreement between criteria, the average course around an episode.
``outcome``
    Wellbeing change in clients with repaired, unrepaired and no ruptures (mixed model with
    the therapist level, through one adapter to the model engine).
``endings``
    Discrete-time survival of unplanned ending on within- and between-client alliance.
``plots``
    Figures of the aggregates (PNG, SVG and the CSV behind each).

Row-level episodes are written to ``data/interim/episodes.csv`` only; ``results/ruptures/``
holds aggregates.
"""
