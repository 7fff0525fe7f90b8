"""Cohort figures: swimmer plot of toxicity episodes, Kaplan–Meier and cumulative-incidence curves.

Each function draws from a frame with agreed columns (the estimators live elsewhere and only have to
produce these columns):

* swimmer: the engine's episode tables (``ToxicityResult.episodes``, or the ``crs_episodes`` /
  ``icans_episodes`` Parquet tables of ``tocsin batch``): ``patient_id, episode, onset_day, peak_grade,
  duration_days, ongoing``; optional treatments ``patient_id, day, drug`` (see
  :func:`treatments_from_events`) and follow-up ``patient_id, last_day``.
* Kaplan–Meier: ``group, time, n_risk, n_event, n_censor, survival, std_err, lower, upper``, one row per
  distinct time with an event or a censoring (as R ``survfit`` with ``censor = TRUE``).
* cumulative incidence: ``group, cause, time, n_risk, cuminc, std_err, lower, upper``.

Numbers at risk at a chosen time *t* are read from the frame as R's ``summary(fit, times = t)`` reports
them: the risk set is constant between recorded times, so it is ``n_risk`` of the first row at or after
*t*; after the last row it is that row's ``n_risk - n_event - n_censor`` (for cumulative incidence,
which has no such counts, it is unknown and shown as "–").

Example
-------
>>> import polars as pl
>>> km = pl.DataFrame({"group": "all", "time": [2.0, 5.0], "n_risk": [3, 2], "n_event": [1, 0],
...                    "n_censor": [0, 2], "survival": [2 / 3, 2 / 3], "std_err": [0.27, 0.27],
...                    "lower": [0.05, 0.05], "upper": [0.95, 0.95]})
>>> numbers_at_risk(km, [0, 3, 6])["n_risk"].to_list()
[3, 2, 0]
>>> figure = km_figure(km, time_label="Months since infusion")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from tocsin.adapters.plots.style import GRADE_COLOURS, SERIES_COLOURS, grade_legend_handles, new_figure
from tocsin.vocabulary import load_vocabulary

KM_COLUMNS = ("group", "time", "n_risk", "n_event", "n_censor", "survival", "std_err", "lower", "upper")
CUMINC_COLUMNS = ("group", "cause", "time", "n_risk", "cuminc", "std_err", "lower", "upper")
EPISODE_COLUMNS = ("patient_id", "episode", "onset_day", "peak_grade", "duration_days", "ongoing")
TREATMENT_COLUMNS = ("patient_id", "day", "drug")
FOLLOW_UP_COLUMNS = ("patient_id", "last_day")
ALL_PATIENTS = "All patients"
_CAUSE_STYLES = ("-", "--", "-.", ":")
_PER_PATIENT_LABELS_UP_TO = 60
_DAY_SCALE_ON_TOP_FROM = 30


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} frame lacks column(s) {', '.join(missing)}; it needs {', '.join(columns)} "
            f"(has {', '.join(frame.columns)})"
        )


def _groups(frame: pl.DataFrame) -> list[str]:
    return list(dict.fromkeys(_group_labels(frame).to_list()))


def _group_labels(frame: pl.DataFrame) -> pl.Series:
    """Group as text; an ungrouped estimate (null group) is "All patients"."""
    return frame.get_column("group").cast(pl.Utf8).fill_null(ALL_PATIENTS)


def _floats(series: pl.Series) -> np.ndarray:
    return series.cast(pl.Float64).fill_null(float("nan")).to_numpy()


# ------------------------------------------------------------------ numbers at risk


def numbers_at_risk(frame: pl.DataFrame, times: Sequence[float]) -> pl.DataFrame:
    """Numbers at risk per group at ``times`` (``group, time, n_risk``), by the rule in the module docstring.

    ``frame`` is a Kaplan–Meier frame (or a cumulative-incidence frame: then times after its last row give
    a null ``n_risk``, since the frame does not say who left at that time).
    """
    _require(frame, ("group", "time", "n_risk"), "numbers-at-risk")
    counts = "n_event" in frame.columns and "n_censor" in frame.columns
    labelled = frame.with_columns(_group_labels(frame).alias("group"))
    rows: list[dict[str, Any]] = []
    for group in _groups(frame):
        # Cumulative incidence repeats each time once per cause with the same n_risk: one row per time.
        curve = labelled.filter(pl.col("group") == group).group_by("time", maintain_order=True).first().sort("time")
        time = _floats(curve.get_column("time"))
        for t in times:
            index = int(np.searchsorted(time, t, side="left"))
            if index < curve.height:
                n_risk: int | None = int(curve["n_risk"][index])
            elif counts:
                last = curve.row(-1, named=True)
                n_risk = int(last["n_risk"] - last["n_event"] - last["n_censor"])
            else:
                n_risk = None
            rows.append({"group": group, "time": float(t), "n_risk": n_risk})
    return pl.DataFrame(rows, schema={"group": pl.Utf8, "time": pl.Float64, "n_risk": pl.Int64})


def _at_risk_times(ax: Axes, chosen: Sequence[float] | None) -> list[float]:
    if chosen is not None:
        return [float(t) for t in chosen]
    low, high = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if 0 <= t <= high + 1e-9 and t >= low]


def _draw_at_risk(ax: Axes, table: pl.DataFrame, colours: dict[str, str]) -> None:
    groups = list(dict.fromkeys(table.get_column("group").to_list()))
    for lane, group in enumerate(groups):
        y = len(groups) - 1 - lane
        for row in table.filter(pl.col("group") == group).iter_rows(named=True):
            text = "–" if row["n_risk"] is None else f"{row['n_risk']:,}"
            ax.text(row["time"], y, text, ha="center", va="center", fontsize=8, color=colours[group])
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_yticks(range(len(groups)), list(reversed(groups)), fontsize=8)
    for tick, group in zip(ax.get_yticklabels(), reversed(groups)):
        tick.set_color(colours[group])
    ax.tick_params(axis="both", length=0)
    ax.tick_params(axis="y", pad=16)  # the counts at time 0 are centred on the axis: keep the names clear of them
    ax.tick_params(axis="x", labelbottom=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Number at risk", loc="left", fontsize=8)


def _curve_figure(n_groups: int, width: float) -> tuple[Figure, Axes, Axes]:
    table_height = 0.3 * n_groups + 0.45
    figure = new_figure(width, 4.2 + table_height + 0.6)
    grid = figure.add_gridspec(
        2, 1, height_ratios=[4.2, table_height], hspace=0.32, left=0.16, right=0.96, top=0.92, bottom=0.07
    )
    curves = figure.add_subplot(grid[0])
    at_risk = figure.add_subplot(grid[1], sharex=curves)
    return figure, curves, at_risk


def _finish_axes(curves: Axes, time_label: str, y_label: str, title: str | None) -> None:
    curves.set_xlim(left=0)
    curves.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 3, 5, 6, 10]))
    curves.set_xlabel(time_label, fontsize=9)
    curves.xaxis.set_label_coords(0.5, -0.09)
    curves.set_ylabel(y_label, fontsize=9)
    curves.set_ylim(-0.02, 1.02)
    curves.grid(color="#e6e6e6", linewidth=0.5)
    curves.tick_params(labelsize=8)
    if title:
        curves.set_title(title, loc="left", fontsize=11)


# ------------------------------------------------------------------ Kaplan–Meier


def _step_from(time: np.ndarray, values: np.ndarray, start: float) -> tuple[np.ndarray, np.ndarray]:
    """The step curve from time 0 (value ``start``) unless the frame already has a row at time 0."""
    if time.size and time[0] <= 0:
        return time, values
    return np.concatenate([[0.0], time]), np.concatenate([[start], values])


def km_figure(
    frame: pl.DataFrame,
    *,
    at_risk_times: Sequence[float] | None = None,
    time_label: str = "Time since infusion (months)",
    y_label: str = "Survival probability",
    title: str | None = None,
    confidence: bool = True,
    width: float = 7.5,
) -> Figure:
    """Kaplan–Meier curves with pointwise confidence bands, censor ticks and a numbers-at-risk table.

    ``at_risk_times`` defaults to the x-axis ticks. A frame with a null ``group`` is one curve, "All patients".
    """
    _require(frame, KM_COLUMNS, "Kaplan–Meier")
    groups = _groups(frame)
    colours = {g: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, g in enumerate(groups)}
    figure, curves, at_risk = _curve_figure(len(groups), width)
    labelled = frame.with_columns(_group_labels(frame).alias("group"))
    for group in groups:
        curve = labelled.filter(pl.col("group") == group).sort("time")
        time = _floats(curve["time"])
        x, survival = _step_from(time, _floats(curve["survival"]), 1.0)
        colour = colours[group]
        curves.step(x, survival, where="post", color=colour, linewidth=1.6, label=group if len(groups) > 1 else None)
        if confidence:
            _, lower = _step_from(time, _floats(curve["lower"]), 1.0)
            _, upper = _step_from(time, _floats(curve["upper"]), 1.0)
            curves.fill_between(x, lower, upper, step="post", color=colour, alpha=0.15, linewidth=0)
        censored = curve.filter(pl.col("n_censor") > 0)
        curves.plot(
            _floats(censored["time"]),
            _floats(censored["survival"]),
            linestyle="none",
            marker="|",
            markersize=8,
            markeredgewidth=1.3,
            color=colour,
        )
    handles, labels = curves.get_legend_handles_labels()
    extra = [Line2D([], [], color="#444444", marker="|", linestyle="none", markersize=8, label="censored")]
    if confidence:
        extra.append(Patch(facecolor="#444444", alpha=0.15, label="95% CI"))
    _finish_axes(curves, time_label, y_label, title)
    curves.legend(handles=[*handles, *extra], fontsize=8, frameon=False, loc="best")
    _draw_at_risk(at_risk, numbers_at_risk(frame, _at_risk_times(curves, at_risk_times)), colours)
    return figure


# ------------------------------------------------------------------ cumulative incidence


def cuminc_figure(
    frame: pl.DataFrame,
    *,
    at_risk_times: Sequence[float] | None = None,
    time_label: str = "Time since infusion (months)",
    y_label: str = "Cumulative incidence",
    title: str | None = None,
    confidence: bool = True,
    width: float = 7.5,
    y_max: float = 1.0,
) -> Figure:
    """Cumulative incidence (Aalen–Johansen) per group and cause, with bands and a numbers-at-risk table.

    One group: colour by cause. Several groups: colour by group, line style by cause. ``y_max`` < 1 zooms in
    on rare events (state it in the caption).
    """
    _require(frame, CUMINC_COLUMNS, "cumulative-incidence")
    groups = _groups(frame)
    causes = list(dict.fromkeys(frame.get_column("cause").cast(pl.Utf8).to_list()))
    colours = {g: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, g in enumerate(groups)}
    figure, curves, at_risk = _curve_figure(len(groups), width)
    labelled = frame.with_columns(_group_labels(frame).alias("group"), pl.col("cause").cast(pl.Utf8))
    for g, group in enumerate(groups):
        for c, cause in enumerate(causes):
            curve = labelled.filter((pl.col("group") == group) & (pl.col("cause") == cause)).sort("time")
            if curve.height == 0:
                continue
            colour = SERIES_COLOURS[c % len(SERIES_COLOURS)] if len(groups) == 1 else colours[group]
            style = "-" if len(groups) == 1 else _CAUSE_STYLES[c % len(_CAUSE_STYLES)]
            label = cause if len(groups) == 1 else f"{group}: {cause}"
            time = _floats(curve["time"])
            x, incidence = _step_from(time, _floats(curve["cuminc"]), 0.0)
            curves.step(x, incidence, where="post", color=colour, linestyle=style, linewidth=1.6, label=label)
            if confidence:
                _, lower = _step_from(time, _floats(curve["lower"]), 0.0)
                _, upper = _step_from(time, _floats(curve["upper"]), 0.0)
                curves.fill_between(x, lower, upper, step="post", color=colour, alpha=0.12, linewidth=0)
    _finish_axes(curves, time_label, y_label, title)
    curves.set_ylim(-0.02 * y_max, 1.02 * y_max)
    curves.legend(fontsize=8, frameon=False, loc="best")
    table_colours = colours if len(groups) > 1 else {groups[0]: "#222222"}
    _draw_at_risk(at_risk, numbers_at_risk(frame, _at_risk_times(curves, at_risk_times)), table_colours)
    return figure


# ------------------------------------------------------------------ swimmer


def treatments_from_events(events: pl.DataFrame) -> pl.DataFrame:
    """``patient_id, day, drug`` rows for the swimmer markers, from normalised events: anti-cytokine
    drugs by name, every corticosteroid as "steroid"."""
    vocabulary = load_vocabulary()
    steroids = vocabulary.names_where(steroid=True)
    anti_cytokine = [n for n in vocabulary.names_where(anti_cytokine=True) if n not in steroids]
    item = pl.col("item").cast(pl.Utf8)
    return (
        events.filter(item.is_in([*steroids, *anti_cytokine]))
        .select(
            pl.col("patient_id").cast(pl.Utf8),
            pl.col("t").alias("day"),
            pl.when(item.is_in(steroids)).then(pl.lit("steroid")).otherwise(item).alias("drug"),
        )
        .sort("patient_id", "day")
    )


_TREATMENT_MARKERS = {"tocilizumab": ("v", "#0072B2"), "steroid": ("o", "#CC79A7"), "anakinra": ("D", "#009E73")}
#: Tocilizumab is drawn over the (often daily) steroid markers, which would hide it.
_TREATMENT_ZORDER = {"tocilizumab": 6, "anakinra": 5}
_OTHER_TREATMENT = ("s", "#56B4E9")


def _lane_order(crs: pl.DataFrame, icans: pl.DataFrame, follow_up: pl.DataFrame | None) -> list[str]:
    """Patients by their first toxicity onset (then id); patients without an episode last."""
    onsets = pl.concat(
        [f.select(pl.col("patient_id").cast(pl.Utf8), pl.col("onset_day").cast(pl.Float64)) for f in (crs, icans)]
    )
    if follow_up is not None:
        onsets = pl.concat(
            [onsets, follow_up.select(pl.col("patient_id").cast(pl.Utf8), pl.lit(None, pl.Float64).alias("onset_day"))]
        )
    first = (
        onsets.group_by("patient_id").agg(pl.col("onset_day").min()).sort(["onset_day", "patient_id"], nulls_last=True)
    )
    return first.get_column("patient_id").to_list()


def swimmer_figure(
    crs_episodes: pl.DataFrame,
    icans_episodes: pl.DataFrame,
    treatments: pl.DataFrame | None = None,
    follow_up: pl.DataFrame | None = None,
    *,
    title: str | None = "CRS and ICANS episodes per patient",
    width: float = 9.0,
) -> Figure:
    """One lane per patient: CRS episodes (upper bar) and ICANS episodes (lower, hatched bar) coloured by peak
    grade, tocilizumab/steroid/anakinra markers, an arrow where an episode is ongoing at the last observation,
    and, with ``follow_up``, a line to each patient's last observed day."""
    for frame, what in ((crs_episodes, "CRS episodes"), (icans_episodes, "ICANS episodes")):
        _require(frame, EPISODE_COLUMNS, what)
    if treatments is not None:
        _require(treatments, TREATMENT_COLUMNS, "treatments")
    if follow_up is not None:
        _require(follow_up, FOLLOW_UP_COLUMNS, "follow-up")
    lanes = _lane_order(crs_episodes, icans_episodes, follow_up)
    if not lanes:
        raise ValueError("swimmer plot: no patients (the episode and follow-up frames are empty)")
    row_of = {pid: len(lanes) - 1 - i for i, pid in enumerate(lanes)}
    figure = new_figure(width, max(3.0, 0.3 * len(lanes) + 1.8))
    ax = figure.add_axes((0.12, 1.0 / figure.get_figheight(), 0.62, 1 - 1.6 / figure.get_figheight()))
    if follow_up is not None:
        for row in follow_up.iter_rows(named=True):
            y = row_of[str(row["patient_id"])]
            ax.plot([0, row["last_day"]], [y, y], color="#9e9e9e", linewidth=0.8, zorder=1)
    right_end = 0.0
    for frame, offset, hatch in ((crs_episodes, 0.17, None), (icans_episodes, -0.17, "...")):
        for row in frame.iter_rows(named=True):
            y = row_of[str(row["patient_id"])] + offset
            start, length = row["onset_day"], max(row["duration_days"] or 0.0, 0.15)
            grade = int(row["peak_grade"])
            ax.broken_barh(
                [(start, length)],
                (y - 0.15, 0.3),
                facecolor=GRADE_COLOURS[grade],
                edgecolor="#424242",
                linewidth=0.5,
                hatch=hatch,
                zorder=2,
            )
            right_end = max(right_end, start + length)
            if row["ongoing"]:
                ax.plot(start + length, y, marker=">", color="#212121", markersize=5, zorder=3)
    if treatments is not None:
        for drug, rows in treatments.with_columns(pl.col("patient_id").cast(pl.Utf8)).group_by(
            "drug", maintain_order=True
        ):
            marker, colour = _TREATMENT_MARKERS.get(str(drug[0]), _OTHER_TREATMENT)
            known = rows.filter(pl.col("patient_id").is_in(lanes))
            ys = [row_of[p] + 0.42 for p in known["patient_id"]]
            ax.scatter(
                known["day"],
                ys,
                marker=marker,
                color=colour,
                s=16,
                zorder=_TREATMENT_ZORDER.get(str(drug[0]), 4),
                edgecolor="white",
                linewidth=0.3,
            )
            right_end = max(right_end, float(known["day"].max()) if known.height else 0.0)
    ax.set_yticks(
        range(len(lanes)),
        list(reversed(lanes)) if len(lanes) <= _PER_PATIENT_LABELS_UP_TO else [""] * len(lanes),
        fontsize=7 if len(lanes) > 25 else 8,
    )
    ax.set_ylabel("Patient" if len(lanes) <= _PER_PATIENT_LABELS_UP_TO else f"Patients (n = {len(lanes)})", fontsize=9)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]), right=max(ax.get_xlim()[1], math.ceil(right_end) + 1))
    ax.axvline(0, color="black", linewidth=0.8, alpha=0.6)
    ax.set_xlabel("Days since CAR-T infusion (day 0 = infusion)", fontsize=9)
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.5)
    # a tall plot (a whole cohort) repeats the day scale on top, where the reader starts
    scale_on_top = len(lanes) > _DAY_SCALE_ON_TOP_FROM
    ax.tick_params(axis="x", labelsize=8, top=scale_on_top, labeltop=scale_on_top)
    if title:
        ax.set_title(title, loc="left", fontsize=11, pad=18 if scale_on_top else 6)
    ax.legend(
        handles=_swimmer_legend(treatments, follow_up is not None),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
        frameon=False,
        borderaxespad=0.0,
    )
    return figure


def _swimmer_legend(treatments: pl.DataFrame | None, follow_up: bool) -> list[Any]:
    handles: list[Any] = grade_legend_handles(range(1, 6), ungradable=False)
    handles += [
        Patch(facecolor="white", edgecolor="#424242", label="CRS (upper bar)"),
        Patch(facecolor="white", edgecolor="#424242", hatch="...", label="ICANS (lower bar, dotted)"),
        Line2D([], [], marker=">", color="#212121", linestyle="none", label="ongoing at last observation"),
    ]
    if follow_up:
        handles.append(Line2D([], [], color="#9e9e9e", linewidth=0.8, label="follow-up"))
    if treatments is not None:
        for drug in dict.fromkeys(treatments.get_column("drug").cast(pl.Utf8).to_list()):
            marker, colour = _TREATMENT_MARKERS.get(drug, _OTHER_TREATMENT)
            handles.append(Line2D([], [], marker=marker, color=colour, linestyle="none", label=drug.capitalize()))
    return handles
