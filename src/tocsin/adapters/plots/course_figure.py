"""One patient's course on a shared day axis (day 0 = infusion), as the source papers draw it.

Stacked panels share the x axis: CRS and ICANS grade bands (from the engine's timelines), temperature,
cytokines and inflammation markers (log scale), oxygen (device as a band coloured by the ASTCT tier it
implies, flow as a line), vasopressor rates, drugs given, blood counts with transfusions and growth
factors, and CAR-T levels with the peak (Cmax/Tmax from the engine's kinetics). A panel whose data are
absent is left out, not drawn empty. Nothing here grades: grades, episodes and the peak come from the
:class:`~tocsin.core.engine.GradingResult`; measurements come from the normalised events.

Example
-------
>>> import polars as pl
>>> from tocsin.config import GradingConfig
>>> from tocsin.core.engine import grade_normalised
>>> from tocsin.core.events import IngestLimits, normalise_events
>>> from tocsin.vocabulary import load_vocabulary
>>> raw = pl.DataFrame({"patient_id": "P", "day": ["0", "1.5", "2"],
...                     "item": ["infusion", "temperature", "il6"], "value": ["axi-cel", "39.1", "120"],
...                     "unit": ["", "Cel", "pg/mL"], "file": "x", "line": [2, 3, 4]})
>>> normalised = normalise_events(raw, load_vocabulary(), IngestLimits(earliest_day=-30))
>>> course = patient_course(grade_normalised(normalised, GradingConfig()), normalised.events, "P")
>>> present_panels(course)
['grades', 'temperature', 'inflammation']
>>> figure = course_figure(course)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MultipleLocator, NullFormatter

from tocsin.adapters.plots.style import (
    GRADE_COLOURS,
    SERIES_COLOURS,
    UNGRADABLE_COLOUR,
    UNGRADABLE_HATCH,
    display_name,
    display_unit,
    grade_legend_handles,
    new_figure,
)
from tocsin.core.engine import GradingResult
from tocsin.core.timeline import PID
from tocsin.criteria import load_scale
from tocsin.vocabulary import load_vocabulary

INFLAMMATION_ITEMS = ("il6", "crp", "ferritin", "pct", "ldh", "ifng", "il10")
COUNT_ITEMS = ("anc", "plt", "wbc")
HAEMOGLOBIN = "hgb"
KINETIC_ITEMS = ("car_t_copies", "car_t_cells", "car_t_percent")
#: Lines join measurements at most this many days apart (vitals are charted often, labs daily or less).
VITAL_GAP_DAYS = 1.0
LAB_GAP_DAYS = 8.0
#: CAR-T levels are sampled weekly, then at months 3 and 6: the expansion–contraction curve is drawn joined.
KINETIC_GAP_DAYS = 200.0
#: Dose labels in one slot (above or below the markers) keep this fraction of the day axis apart.
LABEL_SPACING = 0.1
#: ICAHT's neutropenia thresholds (×10⁹/L), drawn as reference lines on the count panel.
ANC_THRESHOLDS = (0.5, 0.1)
#: Items recorded as drugs that are not treatment of the toxicity (shown elsewhere or not at all).
NOT_SHOWN_AS_DRUGS = frozenset({"prophylaxis"})
_EVENT_COLUMNS = ["t", "item", "num", "cat", "lloq", "blq", "route", "orig_value", "orig_unit"]


@dataclass(frozen=True)
class PatientCourse:
    """What the figure draws for one patient, taken from the grading result and the normalised events.

    ``events`` are the patient's canonical events (``item`` as text); ``crs`` and ``icans`` the engine's
    timelines (t, grade, rule); ``kinetics`` the engine's NCA rows (item, unit, cmax, tmax_day); ``end``
    the last observed day; ``fever_celsius`` and ``low_flow_max_l_min`` the grading config's thresholds,
    drawn as reference lines.
    """

    patient_id: str
    details: dict[str, Any]
    events: pl.DataFrame
    crs: pl.DataFrame
    crs_scale: str
    icans: pl.DataFrame
    icans_scale: str
    kinetics: pl.DataFrame
    start: float
    end: float
    fever_celsius: float
    low_flow_max_l_min: float

    def item_rows(self, items: tuple[str, ...] | list[str] | frozenset[str]) -> pl.DataFrame:
        return self.events.filter(pl.col("item").is_in(list(items)))


def patient_course(result: GradingResult, events: pl.DataFrame, patient_id: str) -> PatientCourse:
    """Gather one patient's rows of ``result`` and of the normalised ``events`` (``NormalisedEvents.events``).

    Raises ``KeyError`` naming the patients present when ``patient_id`` is not among them.
    """
    known = result.patients.get_column(PID).cast(pl.Utf8).to_list()
    if patient_id not in known:
        raise KeyError(f"patient {patient_id!r} is not in the graded files (patients: {', '.join(known)})")
    mine = pl.col(PID).cast(pl.Utf8) == patient_id
    own = events.filter(mine).select(
        [pl.col("item").cast(pl.Utf8), *[pl.col(c) for c in _EVENT_COLUMNS if c != "item"]]
    )
    own = own.with_columns(pl.col("orig_unit").cast(pl.Utf8)).sort("t", maintain_order=True)
    details = result.patients.filter(mine).drop(PID).row(0, named=True)
    observed = own.filter(pl.col("item") != "infusion").get_column("t")
    return PatientCourse(
        patient_id=patient_id,
        details=details,
        events=own,
        crs=result.crs.timeline.filter(mine).select("t", "grade", "rule").sort("t"),
        crs_scale=result.crs.scale.title,
        icans=result.icans.timeline.filter(mine).select("t", "grade", "rule").sort("t"),
        icans_scale=result.icans.scale.title,
        kinetics=result.kinetics.filter(mine).select("item", "unit", "cmax", "tmax_day"),
        start=min(float(observed.min()) if observed.len() else 0.0, 0.0),
        end=max(float(observed.max()) if observed.len() else 1.0, 1.0),
        fever_celsius=result.config.crs.fever_celsius,
        low_flow_max_l_min=result.config.crs.low_flow_max_l_min,
    )


# ------------------------------------------------------------------ helpers


def _segments(times: list[float], values: list[Any], end: float) -> list[tuple[float, float, Any]]:
    """(start, stop, value) stretches of a state that holds from each row until the next (the last until ``end``),
    with equal neighbours merged."""
    out: list[tuple[float, float, Any]] = []
    for i, (t, value) in enumerate(zip(times, values)):
        stop = times[i + 1] if i + 1 < len(times) else max(end, t)
        if out and out[-1][2] == value and out[-1][1] == t:
            out[-1] = (out[-1][0], stop, value)
        else:
            out.append((t, stop, value))
    return out


def grade_bands(segments: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Grade stretches from infusion on: CRS and ICANS follow the infusion, so a pre-infusion (baseline)
    assessment is not drawn as days of "grade 0" or "cannot grade" before day 0.

    >>> grade_bands([(-5.0, 0.5, None), (0.5, 3.0, 1)])
    [(0.0, 0.5, None), (0.5, 3.0, 1)]
    """
    return [(max(start, 0.0), stop, grade) for start, stop, grade in segments if stop > 0]


def _unit_of(item: str) -> str:
    return display_unit(load_vocabulary().items[item].unit)


def _legend(ax: Axes, handles: list[Any] | None = None, offset: float = 1.01, **kwargs: Any) -> None:
    """Legends sit right of the panel, so they never cover data."""
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(offset, 1.0),
        fontsize=8,
        frameon=False,
        borderaxespad=0.0,
        **kwargs,
    )


def _plot_series(ax: Axes, rows: pl.DataFrame, max_gap: float, **style: Any) -> None:
    """A measured series; the line breaks across gaps longer than ``max_gap`` days, so sparse values are not
    joined into a course nobody observed."""
    times, values = rows.get_column("t").to_list(), rows.get_column("num").to_list()
    xs: list[float] = []
    ys: list[float] = []
    for i, (t, value) in enumerate(zip(times, values)):
        if i and t - times[i - 1] > max_gap:
            xs.append(float("nan"))
            ys.append(float("nan"))
        xs.append(t)
        ys.append(value)
    ax.plot(xs, ys, **style)


def _log_axis(ax: Axes) -> None:
    """Log y axis labelled with plain numbers (0.1, 10, 1,000), denser ticks when the data span few decades."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 else 3.0
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _number(value: float) -> str:
    """A measured value as a clinician reads it: 20,000 rather than 2e+04; 3 significant digits below 1,000."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def dose_label(row: dict[str, Any]) -> str:
    """A dose as entered (value, unit, route), e.g. "4 mg/kg" or "12 mg intrathecal"."""
    unit = display_unit(row["orig_unit"]) if row["orig_unit"] else ""
    route = f" {row['route']}" if row["route"] else ""
    return f"{row['orig_value']} {unit}{route}".strip()


# ------------------------------------------------------------------ panels


def _draw_grades(ax: Axes, course: PatientCourse) -> None:
    lanes = [("CRS", course.crs), ("ICANS", course.icans)]
    for lane, (name, timeline) in enumerate(lanes):
        y = len(lanes) - 1 - lane
        if timeline.height == 0:
            ax.text(max(course.start, 0.0), y, "  no assessments recorded", va="center", fontsize=8, color="#636363")
        segments = _segments(timeline.get_column("t").to_list(), timeline.get_column("grade").to_list(), course.end)
        for start, stop, grade in grade_bands(segments):
            width = max(stop - start, 0.05)  # a single assessment still shows as a sliver
            if grade is None:
                ax.broken_barh(
                    [(start, width)],
                    (y - 0.35, 0.7),
                    facecolor="white",
                    edgecolor=UNGRADABLE_COLOUR,
                    hatch=UNGRADABLE_HATCH,
                    linewidth=0.0,
                )
            else:
                ax.broken_barh([(start, width)], (y - 0.35, 0.7), facecolor=GRADE_COLOURS[int(grade)], linewidth=0)
    ax.set_yticks(range(len(lanes)), [name for name, _ in reversed(lanes)])
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_title(f"Grades: CRS ({course.crs_scale}), ICANS ({course.icans_scale})", loc="left", fontsize=9)
    _legend(ax, grade_legend_handles(), ncols=2)


def _draw_temperature(ax: Axes, course: PatientCourse) -> None:
    rows = course.item_rows(["temperature"])
    _plot_series(
        ax, rows, VITAL_GAP_DAYS, color=SERIES_COLOURS[5], marker="o", markersize=2.5, linewidth=1, label="Temperature"
    )
    fever = course.fever_celsius
    ax.axhline(fever, color="#636363", linestyle="--", linewidth=0.8, label=f"{fever:g} °C (fever, grading config)")
    ax.set_ylabel("Temperature\n(°C)")
    low, high = float(rows["num"].min()), float(rows["num"].max())
    ax.set_ylim(min(low, fever - 2.0) - 0.3, max(high, fever + 1.0) + 0.3)
    _legend(ax)


def _draw_inflammation(ax: Axes, course: PatientCourse) -> None:
    for colour, item in zip(SERIES_COLOURS, [i for i in INFLAMMATION_ITEMS if _has(course, [i])]):
        rows = course.item_rows([item]).filter(pl.col("num") > 0)
        label = f"{display_name(item)} ({_unit_of(item)})"
        _plot_series(ax, rows, LAB_GAP_DAYS, color=colour, marker="o", markersize=3, linewidth=1, label=label)
    _log_axis(ax)
    ax.set_ylabel("Inflammation\n(log scale)")
    _legend(ax)


def _oxygen_tiers() -> dict[str, int]:
    return dict(load_scale("crs_astct2019").table("oxygen_device_grade"))


def _draw_oxygen(ax: Axes, course: PatientCourse) -> None:
    devices = course.item_rows(["oxygen"])
    tiers = _oxygen_tiers()
    handles: list[Any] = []
    seen: set[str] = set()
    band = ax.get_xaxis_transform()
    for start, stop, device in _segments(devices["t"].to_list(), devices["cat"].to_list(), course.end):
        if device == "room_air":
            continue
        colour = GRADE_COLOURS[tiers.get(device, 0)]
        ax.axvspan(start, stop, ymin=0.0, ymax=1.0, facecolor=colour, alpha=0.45, linewidth=0)
        label_x = (start + stop) / 2
        if stop - start > 0.06 * (course.end - course.start):
            ax.text(label_x, 0.93, display_name(device), transform=band, ha="center", va="top", fontsize=7)
        if device not in seen:
            seen.add(device)
            handles.append(
                Patch(facecolor=colour, alpha=0.45, label=f"{display_name(device)} (ASTCT tier {tiers.get(device, 0)})")
            )
    flow = course.item_rows(["oxygen_flow"])
    if flow.height:
        times, rates = _flow_steps(course)
        ax.step(times, rates, where="post", color=SERIES_COLOURS[0], linewidth=1.2)
        handles.append(Line2D([], [], color=SERIES_COLOURS[0], label="O₂ flow (L/min)"))
        boundary = course.low_flow_max_l_min
        ax.set_ylim(0, max(float(flow["num"].max()), boundary) * 1.35)
        ax.axhline(boundary, color="#636363", linestyle=":", linewidth=0.8)
        handles.append(Line2D([], [], color="#636363", linestyle=":", label=f"{boundary:g} L/min (low/high flow)"))
    else:
        ax.set_yticks([])
    ax.set_ylabel("Oxygen\n(L/min)" if flow.height else "Oxygen\n(device)")
    _legend(ax, handles)


def _flow_steps(course: PatientCourse) -> tuple[list[float], list[float]]:
    """O₂ flow as a step series: each flow holds until the next flow row, and drops to 0 while the device is
    room air (a flow is not charted again when the patient comes off oxygen)."""
    rows = course.item_rows(["oxygen", "oxygen_flow"])
    times: list[float] = []
    rates: list[float] = []
    flow, device = 0.0, None
    for row in rows.iter_rows(named=True):
        if row["item"] == "oxygen":
            device = row["cat"]
        else:
            flow = row["num"]
        rate = 0.0 if device == "room_air" else flow
        if times and times[-1] == row["t"]:  # device and flow charted together: one step
            rates[-1] = rate
        else:
            times.append(row["t"])
            rates.append(rate)
    return [*times, course.end], [*rates, rates[-1]]


def _vasopressors() -> list[str]:
    return load_vocabulary().names_where(vasopressor=True)


def _draw_vasopressors(ax: Axes, course: PatientCourse) -> None:
    for colour, item in zip(SERIES_COLOURS, [i for i in _vasopressors() if _has(course, [i])]):
        rows = course.item_rows([item])
        # The rate holds until the next row; the last rate holds until the end of the course.
        times = [*rows["t"].to_list(), course.end]
        rates = [*rows["num"].to_list(), rows["num"][-1]]
        ax.step(
            times, rates, where="post", color=colour, linewidth=1.4, label=f"{display_name(item)} ({_unit_of(item)})"
        )
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Vasopressors\n(rate)")
    _legend(ax)


_DRUG_MARKERS = {"tocilizumab": "v", "siltuximab": "v", "anakinra": "D", "etanercept": "D", "levetiracetam": "s"}
_STEROID_MARKER = "o"


def drug_items(course: PatientCourse) -> list[str]:
    """The drugs this patient was given, in vocabulary order (prophylaxis left out)."""
    vocabulary = load_vocabulary()
    drugs = [n for n in vocabulary.names_where(kind="drug") if n not in NOT_SHOWN_AS_DRUGS]
    return [d for d in drugs if _has(course, [d])]


def _draw_drugs(ax: Axes, course: PatientCourse) -> None:
    vocabulary = load_vocabulary()
    drugs = drug_items(course)
    span = course.end - course.start
    for lane, item in enumerate(drugs):
        y = len(drugs) - 1 - lane
        steroid = vocabulary.items[item].steroid
        colour = (
            SERIES_COLOURS[3]
            if steroid
            else SERIES_COLOURS[0]
            if item in ("tocilizumab", "siltuximab")
            else SERIES_COLOURS[2]
        )
        rows = course.item_rows([item])
        ax.scatter(
            rows["t"], [y] * rows.height, marker=_DRUG_MARKERS.get(item, _STEROID_MARKER), s=28, color=colour, zorder=3
        )
        # A dose is written where it changes; a label too close to the previous one in its slot moves to the
        # other side of the marker, or is left out (the table under the figure lists every dose).
        previous_label, last_x = None, {1: float("-inf"), -1: float("-inf")}
        for row in rows.iter_rows(named=True):
            label = dose_label(row)
            if label == previous_label:
                continue
            previous_label = label
            for side in (1, -1):
                if row["t"] - last_x[side] >= LABEL_SPACING * span:
                    ax.annotate(
                        label,
                        (row["t"], y),
                        xytext=(0, 7 * side),
                        textcoords="offset points",
                        ha="center",
                        va="bottom" if side == 1 else "top",
                        fontsize=7,
                    )
                    last_x[side] = row["t"]
                    break
    ax.set_yticks(range(len(drugs)), [display_name(d) for d in reversed(drugs)])
    ax.set_ylim(-0.8, len(drugs) - 0.2)
    ax.set_title("Drugs given (dose where it changes)", loc="left", fontsize=9)


_BLOOD_SUPPORT_MARKERS = {
    "rbc_transfusion": ("v", SERIES_COLOURS[5]),
    "platelet_transfusion": ("v", SERIES_COLOURS[1]),
    "g_csf": ("^", SERIES_COLOURS[2]),
    "pegfilgrastim": ("D", SERIES_COLOURS[2]),  # G-CSF's colour; its own marker: one dose acts for about two weeks
    "gm_csf": ("^", SERIES_COLOURS[4]),
}


def _draw_counts(ax: Axes, course: PatientCourse) -> None:
    handles: list[Any] = []
    for colour, item in zip(SERIES_COLOURS, COUNT_ITEMS):
        rows = course.item_rows([item]).filter(pl.col("num") > 0)
        if rows.height:
            _plot_series(ax, rows, LAB_GAP_DAYS, color=colour, marker="o", markersize=2.5, linewidth=1)
            handles.append(
                Line2D([], [], color=colour, marker="o", markersize=3, label=f"{display_name(item)} (×10⁹/L)")
            )
    if _has(course, ["anc"]):
        for threshold in ANC_THRESHOLDS:
            ax.axhline(threshold, color=SERIES_COLOURS[0], linestyle=":", linewidth=0.7)
        handles.append(Line2D([], [], color=SERIES_COLOURS[0], linestyle=":", label="ANC 0.5 and 0.1 ×10⁹/L"))
    if handles:
        _log_axis(ax)
        ax.set_ylabel("Counts\n(×10⁹/L, log)")
    else:
        ax.set_yticks([])
        ax.set_ylabel("Counts")
    hb = course.item_rows([HAEMOGLOBIN])
    if hb.height:
        twin = ax.twinx()
        _plot_series(
            twin, hb, LAB_GAP_DAYS, color=SERIES_COLOURS[3], marker="s", markersize=2.5, linewidth=1, linestyle="--"
        )
        twin.tick_params(labelsize=8)
        twin.set_ylabel("Hb (g/dL)", fontsize=8)
        twin.set_ylim(0, max(float(hb["num"].max()), 12.0) * 1.1)
        handles.append(
            Line2D([], [], color=SERIES_COLOURS[3], marker="s", markersize=3, linestyle="--", label="Hb (g/dL)")
        )
    strip = ax.get_xaxis_transform()  # markers along the bottom of the panel, whatever the y scale
    for item, (marker, colour) in _BLOOD_SUPPORT_MARKERS.items():
        rows = course.item_rows([item])
        if rows.height:
            y = 0.05 if "transfusion" in item else 0.14
            ax.scatter(
                rows["t"],
                [y] * rows.height,
                marker=marker,
                color=colour,
                s=30,
                transform=strip,
                zorder=4,
                clip_on=False,
            )
            handles.append(Line2D([], [], marker=marker, color=colour, linestyle="none", label=display_name(item)))
    # The Hb axis takes the space right of the panel: its legend starts further right.
    _legend(ax, handles, offset=1.09 if hb.height else 1.01)


def _draw_car_t(ax: Axes, course: PatientCourse) -> None:
    peaks = {row["item"]: row for row in course.kinetics.iter_rows(named=True)}
    for colour, item in zip(SERIES_COLOURS, [i for i in KINETIC_ITEMS if _has(course, [i])]):
        rows = course.item_rows([item])
        unit = _unit_of(item)
        quantified = rows.filter(~pl.col("blq") & (pl.col("num") > 0))
        _plot_series(
            ax,
            quantified,
            KINETIC_GAP_DAYS,
            color=colour,
            marker="o",
            markersize=3,
            linewidth=1,
            label=f"{display_name(item)} ({unit})",
        )
        below = rows.filter(pl.col("blq") & pl.col("lloq").is_not_null())
        if below.height:
            ax.scatter(
                below["t"],
                below["lloq"],
                marker="v",
                facecolor="white",
                edgecolor=colour,
                s=22,
                zorder=3,
                label="below LLOQ (drawn at the LLOQ)",
            )
        peak = peaks.get(item)
        if peak and peak["cmax"] is not None and peak["tmax_day"] is not None:
            ax.scatter(
                [peak["tmax_day"]],
                [peak["cmax"]],
                marker="*",
                s=140,
                color=colour,
                edgecolor="black",
                zorder=4,
                label=f"peak: Cmax {_number(peak['cmax'])} {unit}\nTmax day {peak['tmax_day']:.1f}",
            )
    _log_axis(ax)
    ax.set_ylabel("CAR-T\n(log scale)")
    _legend(ax)


def _has(course: PatientCourse, items: list[str] | tuple[str, ...]) -> bool:
    return course.item_rows(list(items)).height > 0


class Panel(NamedTuple):
    name: str
    height: float
    present: Callable[[PatientCourse], bool]
    draw: Callable[[Axes, PatientCourse], None]


PANELS: tuple[Panel, ...] = (
    Panel("grades", 0.9, lambda c: c.crs.height > 0 or c.icans.height > 0, _draw_grades),
    Panel("temperature", 1.5, lambda c: _has(c, ["temperature"]), _draw_temperature),
    Panel("inflammation", 1.8, lambda c: _has(c, INFLAMMATION_ITEMS), _draw_inflammation),
    Panel("oxygen", 1.2, lambda c: _has(c, ["oxygen", "oxygen_flow"]), _draw_oxygen),
    Panel("vasopressors", 1.2, lambda c: _has(c, _vasopressors()), _draw_vasopressors),
    Panel("drugs", 0.0, lambda c: bool(drug_items(c)), _draw_drugs),
    Panel("counts", 1.8, lambda c: _has(c, [*COUNT_ITEMS, HAEMOGLOBIN, *_BLOOD_SUPPORT_MARKERS]), _draw_counts),
    Panel("car_t", 1.6, lambda c: _has(c, KINETIC_ITEMS), _draw_car_t),
)


def present_panels(course: PatientCourse) -> list[str]:
    """Names of the panels the figure draws for this course, top to bottom (those with data)."""
    return [panel.name for panel in PANELS if panel.present(course)]


def _panel_height(panel: Panel, course: PatientCourse) -> float:
    return 0.35 + 0.55 * len(drug_items(course)) if panel.name == "drugs" else panel.height


def course_figure(course: PatientCourse, width: float = 11.0) -> Figure:
    """The stacked-panel figure of one course; every panel shares the day axis (day 0 = infusion)."""
    panels = [panel for panel in PANELS if panel.present(course)]
    if not panels:
        raise ValueError(f"patient {course.patient_id}: nothing to draw (no graded assessments and no measurements)")
    deaths = course.item_rows(["death"])
    heights = [_panel_height(panel, course) for panel in panels]
    header, footer = 0.7, 0.6
    figure = new_figure(width, sum(heights) + 0.35 * len(panels) + header + footer)
    total = figure.get_figheight()
    grid = figure.add_gridspec(
        len(panels),
        1,
        height_ratios=heights,
        hspace=0.45,
        left=0.14,
        right=0.72,
        top=1 - header / total,
        bottom=footer / total,
    )
    axes: list[Axes] = []
    for index, panel in enumerate(panels):
        ax = figure.add_subplot(grid[index], sharex=axes[0] if axes else None)
        panel.draw(ax, course)
        ax.axvline(0, color="black", linewidth=0.8, alpha=0.6)
        for day in deaths.get_column("t"):
            ax.axvline(day, color="black", linewidth=1.2, linestyle="-.")
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.5)
        ax.tick_params(labelsize=8)
        ax.yaxis.label.set_size(8)
        if index < len(panels) - 1:
            ax.tick_params(labelbottom=False)
        axes.append(ax)
    span = course.end - course.start
    axes[0].set_xlim(course.start - 0.02 * span - 0.3, course.end + 0.02 * span + 0.3)
    axes[-1].xaxis.set_major_locator(MultipleLocator(_tick_step(span)))
    axes[-1].set_xlabel("Days since CAR-T infusion (day 0 = infusion)", fontsize=9)
    figure.suptitle(_title(course), x=0.14, ha="left", fontsize=11, y=1 - 0.2 / total, va="top")
    return figure


def _tick_step(span: float) -> int:
    for step in (1, 2, 5, 7, 14, 28):
        if span / step <= 16:
            return step
    return 56


def _title(course: PatientCourse) -> str:
    d = course.details
    parts = [f"Patient {course.patient_id}"]
    if d.get("product"):
        parts.append(str(d["product"]))
    person = ", ".join(
        p
        for p in (
            f"{d['age_years']:g} y" if d.get("age_years") is not None else "",
            d.get("sex") or "",
            d.get("disease") or "",
        )
        if p
    )
    if person:
        parts.append(person)
    for death in course.item_rows(["death"]).iter_rows(named=True):
        parts.append(f"died day {death['t']:.1f} (cause: {death['cat']}; dash-dot line)")
    return " — ".join(parts)
