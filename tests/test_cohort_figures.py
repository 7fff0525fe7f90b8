"""Cohort figures from frames with the agreed columns: numbers at risk, KM, cumulative incidence, swimmer.

The numbers-at-risk rule is checked against its definition (R ``summary.survfit(times = t)``: subjects
whose time is >= t) on random data, and against lifelines' KM event table on the Waltons data set.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.collections import PolyCollection

from figure_checks import overlapping_texts
from tocsin.adapters.plots.cohort_figures import (
    ALL_PATIENTS,
    cuminc_figure,
    km_figure,
    numbers_at_risk,
    swimmer_figure,
    treatments_from_events,
)
from tocsin.adapters.plots.style import GRADE_COLOURS
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_normalised
from tocsin.core.events import IngestLimits, normalise_events
from tocsin.synth import generate_cohort
from tocsin.vocabulary import load_vocabulary


def km_frame(durations: np.ndarray, events: np.ndarray, group: str | None = "all") -> pl.DataFrame:
    """A KM frame with the agreed columns, one row per distinct time (event or censoring), product-limit."""
    rows, survival = [], 1.0
    for t in np.unique(durations):
        at_risk = int((durations >= t).sum())
        died = int(((durations == t) & events).sum())
        censored = int(((durations == t) & ~events).sum())
        survival *= 1 - died / at_risk
        rows.append(
            (group, float(t), at_risk, died, censored, survival, 0.05, max(survival - 0.1, 0), min(survival + 0.1, 1))
        )
    columns = ["group", "time", "n_risk", "n_event", "n_censor", "survival", "std_err", "lower", "upper"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def texts_of(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# ------------------------------------------------------------------ numbers at risk


def test_numbers_at_risk_by_hand() -> None:
    frame = pl.DataFrame(
        {"group": "g", "time": [2.0, 5.0, 7.0], "n_risk": [10, 8, 5], "n_event": [1, 1, 2], "n_censor": [1, 2, 1]}
    )
    at = numbers_at_risk(frame, [0, 2, 3, 5, 6, 7, 8])
    assert at["n_risk"].to_list() == [10, 10, 8, 8, 5, 5, 2]  # after the last row: 5 - 2 - 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=40),
    st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=8),
)
def test_numbers_at_risk_equal_the_definition(subjects: list[tuple[int, bool]], times: list[float]) -> None:
    durations = np.array([d for d, _ in subjects], dtype=float)
    events = np.array([e for _, e in subjects])
    at = numbers_at_risk(km_frame(durations, events), times)
    assert at["n_risk"].to_list() == [int((durations >= t).sum()) for t in times]


def test_numbers_at_risk_match_lifelines_event_table() -> None:
    from lifelines import KaplanMeierFitter
    from lifelines.datasets import load_waltons

    data = load_waltons()
    frames = []
    for group, sub in data.groupby("group"):
        frames.append(km_frame(sub["T"].to_numpy(float), sub["E"].to_numpy(bool), str(group)))
        fitter = KaplanMeierFitter().fit(sub["T"], sub["E"])
        table = fitter.event_table
        mine = numbers_at_risk(frames[-1], table.index[1:].tolist())
        assert mine["n_risk"].to_list() == table["at_risk"].iloc[1:].astype(int).tolist()
    assert numbers_at_risk(pl.concat(frames), [0])["n_risk"].to_list() == [129, 34]  # control, miR-137


def test_numbers_at_risk_of_cumulative_incidence_are_unknown_after_the_last_row() -> None:
    frame = pl.DataFrame(
        {
            "group": "g",
            "cause": ["relapse", "death", "relapse", "death"],
            "time": [1.0, 1.0, 4.0, 4.0],
            "n_risk": [9, 9, 6, 6],
        }
    )
    assert numbers_at_risk(frame, [0, 2, 5])["n_risk"].to_list() == [9, 6, None]


# ------------------------------------------------------------------ Kaplan–Meier


def two_groups() -> pl.DataFrame:
    rng = np.random.default_rng(7)
    a = km_frame(rng.integers(1, 30, 25).astype(float), rng.random(25) < 0.7, "axi-cel")
    b = km_frame(rng.integers(1, 30, 20).astype(float), rng.random(20) < 0.5, "tisa-cel")
    return pl.concat([a, b])


def test_km_figure_has_curves_censor_ticks_and_the_at_risk_table() -> None:
    frame = two_groups()
    figure = km_figure(frame, at_risk_times=[0, 10, 20], time_label="Months since infusion", title="PFS")
    curves, table = figure.axes
    assert curves.get_xlabel() == "Months since infusion" and curves.get_ylabel() == "Survival probability"
    assert curves.get_title(loc="left") == "PFS"
    legend = [t.get_text() for t in curves.get_legend().get_texts()]
    assert legend[:2] == ["axi-cel", "tisa-cel"] and "censored" in legend and "95% CI" in legend
    censor_marks = [line for line in curves.lines if line.get_marker() == "|"]
    expected = frame.filter(pl.col("n_censor") > 0).group_by("group").len().sort("group")["len"].to_list()
    assert [len(line.get_xdata()) for line in censor_marks] == expected
    assert sum(isinstance(c, PolyCollection) for c in curves.collections) == 2  # one CI band per group
    expected_counts = numbers_at_risk(frame, [0, 10, 20])["n_risk"].to_list()
    assert texts_of(table) == [f"{n:,}" for n in expected_counts]
    assert [t.get_text() for t in table.get_yticklabels()] == ["tisa-cel", "axi-cel"]


def test_km_curve_starts_at_one_at_time_zero() -> None:
    figure = km_figure(km_frame(np.array([3.0, 5.0, 8.0]), np.array([True, False, True]), group=None))
    step = next(line for line in figure.axes[0].lines if line.get_marker() != "|")
    assert step.get_xdata()[0] == 0 and step.get_ydata()[0] == 1.0
    assert [t.get_text() for t in figure.axes[1].get_yticklabels()] == [ALL_PATIENTS]


def test_km_default_at_risk_times_are_the_axis_ticks_and_no_text_overlaps() -> None:
    figure = km_figure(two_groups())
    curves, table = figure.axes
    ticks = [t for t in curves.get_xticks() if curves.get_xlim()[0] <= t <= curves.get_xlim()[1]]
    assert len(table.texts) == 2 * len(ticks)
    assert overlapping_texts(figure) == []


def test_km_frame_without_the_agreed_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks column\\(s\\) n_censor, std_err"):
        km_figure(two_groups().drop("n_censor", "std_err"))


# ------------------------------------------------------------------ cumulative incidence


def cuminc_frame() -> pl.DataFrame:
    rows = []
    for group, scale in (("axi-cel", 1.0), ("tisa-cel", 0.7)):
        for cause, share in (("relapse", 0.6), ("non-relapse mortality", 0.2)):
            for i, t in enumerate([1.0, 3.0, 6.0, 12.0]):
                value = share * scale * (i + 1) / 4
                rows.append((group, cause, t, 40 - 8 * i, value, 0.05, max(value - 0.1, 0), value + 0.1))
    return pl.DataFrame(
        rows, schema=["group", "cause", "time", "n_risk", "cuminc", "std_err", "lower", "upper"], orient="row"
    )


def test_cumulative_incidence_by_group_and_cause() -> None:
    figure = cuminc_figure(cuminc_frame(), at_risk_times=[0, 6, 24], time_label="Months since infusion")
    curves, table = figure.axes
    legend = [t.get_text() for t in curves.get_legend().get_texts()]
    assert legend == [
        "axi-cel: relapse",
        "axi-cel: non-relapse mortality",
        "tisa-cel: relapse",
        "tisa-cel: non-relapse mortality",
    ]
    styles = [line.get_linestyle() for line in curves.lines]
    assert styles == ["-", "--", "-", "--"]  # line style = cause, colour = group
    assert curves.lines[0].get_color() == curves.lines[1].get_color() != curves.lines[2].get_color()
    assert curves.lines[0].get_xdata()[0] == 0 and curves.lines[0].get_ydata()[0] == 0
    assert texts_of(table) == ["40", "24", "–", "40", "24", "–"]
    assert curves.get_ylabel() == "Cumulative incidence"
    assert overlapping_texts(figure) == []


def test_cumulative_incidence_of_one_group_is_coloured_by_cause() -> None:
    frame = cuminc_frame().filter(pl.col("group") == "axi-cel")
    curves = cuminc_figure(frame).axes[0]
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["relapse", "non-relapse mortality"]
    assert curves.lines[0].get_color() != curves.lines[1].get_color()


def test_cumulative_incidence_frame_is_checked() -> None:
    with pytest.raises(ValueError, match="cumulative-incidence frame lacks column\\(s\\) cause"):
        cuminc_figure(cuminc_frame().drop("cause"))


# ------------------------------------------------------------------ swimmer


def episodes(rows: list[tuple[str, int, float, int, float, bool]]) -> pl.DataFrame:
    schema = {
        "patient_id": pl.Utf8,
        "episode": pl.Int64,
        "onset_day": pl.Float64,
        "peak_grade": pl.Int8,
        "duration_days": pl.Float64,
        "ongoing": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def test_swimmer_lanes_bars_and_markers() -> None:
    crs = episodes([("P2", 1, 1.0, 2, 3.0, False), ("P1", 1, 4.0, 3, 2.5, False), ("P1", 2, 10.0, 1, 1.0, True)])
    icans = episodes([("P1", 1, 5.0, 4, 4.0, False)])
    treatments = pl.DataFrame(
        {"patient_id": ["P1", "P1", "P2"], "day": [4.5, 5.2, 1.5], "drug": ["tocilizumab", "steroid", "tocilizumab"]}
    )
    follow_up = pl.DataFrame({"patient_id": ["P1", "P2", "P3"], "last_day": [28.0, 30.0, 25.0]})
    figure = swimmer_figure(crs, icans, treatments, follow_up)
    ax = figure.axes[0]
    # Lanes top to bottom by first onset; P3 (no episode) last.
    assert [t.get_text() for t in reversed(ax.get_yticklabels())] == ["P2", "P1", "P3"]
    bars = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bars) == 4  # one per episode
    colours = [tuple(np.round(b.get_facecolor()[0][:3], 3)) for b in bars]
    from matplotlib.colors import to_rgb

    assert colours == [tuple(np.round(to_rgb(GRADE_COLOURS[g]), 3)) for g in (2, 3, 1, 4)]
    assert [b.get_hatch() for b in bars] == [None, None, None, "..."]  # ICANS bars are hatched
    ongoing = [line for line in ax.lines if line.get_marker() == ">"]
    assert len(ongoing) == 1 and ongoing[0].get_xdata()[0] == 11.0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"Tocilizumab", "Steroid", "follow-up", "CRS (upper bar)", "grade 1"} <= set(legend)
    assert ax.get_xlabel().startswith("Days since CAR-T infusion")
    assert overlapping_texts(figure) == []


def test_swimmer_from_the_engine_on_a_synthetic_cohort() -> None:
    raw = generate_cohort(12, seed=3).events
    normalised = normalise_events(
        raw.with_columns(pl.lit("synthetic").alias("file"), pl.int_range(1, pl.len() + 1).alias("line")),
        load_vocabulary(),
        IngestLimits(earliest_day=-30, not_after=datetime(2100, 1, 1)),
    )
    result = grade_normalised(normalised, GradingConfig())
    follow_up = normalised.events.group_by("patient_id").agg(pl.col("t").max().alias("last_day"))
    figure = swimmer_figure(
        result.crs.episodes, result.icans.episodes, treatments_from_events(normalised.events), follow_up
    )
    ax = figure.axes[0]
    assert len(ax.get_yticklabels()) == 12
    bars = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bars) == result.crs.episodes.height + result.icans.episodes.height
    assert overlapping_texts(figure) == []


def test_treatments_from_events_names_steroids_as_one_class() -> None:
    events = pl.DataFrame(
        {
            "patient_id": ["A", "A", "A", "A"],
            "t": [1.0, 2.0, 3.0, 4.0],
            "item": ["tocilizumab", "dexamethasone", "methylprednisolone", "temperature"],
        }
    )
    assert treatments_from_events(events)["drug"].to_list() == ["tocilizumab", "steroid", "steroid"]


def test_swimmer_refuses_empty_and_malformed_frames() -> None:
    empty = episodes([])
    with pytest.raises(ValueError, match="no patients"):
        swimmer_figure(empty, empty)
    with pytest.raises(ValueError, match="ICANS episodes frame lacks column\\(s\\) peak_grade"):
        swimmer_figure(episodes([("P", 1, 1.0, 1, 1.0, False)]), empty.drop("peak_grade"))


def test_cumulative_incidence_axis_can_zoom_on_rare_events() -> None:
    curves = cuminc_figure(cuminc_frame(), y_max=0.5).axes[0]
    assert curves.get_ylim() == pytest.approx((-0.01, 0.51))


def test_short_follow_up_still_gets_several_at_risk_times() -> None:
    frame = km_frame(np.array([0.1, 0.3, 0.45, 0.6, 0.8]), np.array([True, False, True, True, False]))
    table = km_figure(frame, time_label="Years since infusion").axes[1]
    assert len(table.texts) >= 4
