"""Timeline: the patient's state at every assessment time, built as arrays for a whole batch.

Every state column is "the last value seen" within the patient, so one pass over sorted events serves one
patient or ten thousand. How long an observation stays valid is a parameter of the grading config:

* support is a state until changed: an oxygen device until the next ``oxygen`` row, each vasopressor
  until a row with rate 0;
* a fever counts for ``crs.fever_window_hours`` after it was measured; a blood pressure for
  ``crs.bp_validity_hours``; ICE/CAPD and consciousness for ``icans.neuro_validity_hours``; a seizure
  for ``icans.seizure_validity_hours`` unless a later row says ``none``;
* an ``alternative_cause`` (``finding:cause``) holds until a later ``finding:none``;
* treatment given so far (anti-cytokine or antipyretic) is tracked with its drug and time.

Assessment times are the distinct times at which any item relevant to the toxicity was recorded; the
state at that time includes every row at that time.

An eager Polars operation costs 20–500 µs however few its rows, and the state took about forty of them per
toxicity; so the state is NumPy arrays over the toxicity's rows (:class:`ToxicityRows`), the latest row of
every signal at every assessment comes from one compiled pass (the loop of
:func:`tocsin.core.segments.latest_rows`), and the text columns are gathered once when the timeline frame is
built (:class:`Assessments`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.arrays import patient_positions
from tocsin.core.segments import _latest_rows_loop, compiled
from tocsin.criteria import load_scale
from tocsin.vocabulary import Vocabulary

PID = "patient_id"
HOURS_PER_DAY = 24.0
#: Findings an ``alternative_cause`` row can name for ICANS (``consciousness:sedation``...).
NEURO_FINDINGS = ("ice", "capd", "consciousness", "seizure", "motor_weakness", "cerebral_edema", "icp_sign")


@dataclass(frozen=True)
class Text:
    """A text column kept as row numbers into ``source`` (-1 = null) until the frame is built: the graders
    decide on codes, and a text column is materialised once, by one gather."""

    source: pl.Series
    index: np.ndarray

    def lookup(self, codes: Mapping[str, int], other: int, missing: int) -> np.ndarray:
        """The code of each value in ``codes`` (``other`` for another text, ``missing`` for null)."""
        known = self.index >= 0
        found = np.full(self.index.shape, missing, dtype=np.int64)
        if known.any():
            text = self.source.gather(self.index[known])
            mapped = text.replace_strict(dict(codes), default=other, return_dtype=pl.Int64).to_numpy()
            found[known] = np.where(text.is_null().to_numpy(), missing, mapped)
        return found

    def labelled(self, *values: str) -> np.ndarray:
        """Whether each row's text is one of ``values`` (for a table of labels: it is read whole)."""
        wanted = self.source.is_in(values).fill_null(False).to_numpy()
        return np.where(self.index >= 0, wanted[np.maximum(self.index, 0)], False) if wanted.size else (
            np.zeros(self.index.shape, np.bool_)
        )

    def series(self, name: str) -> pl.Series:
        missing = self.index < 0
        if not missing.any():
            return self.source.gather(self.index).alias(name)
        # The source's own null (appended) marks the missing rows: one gather, no mask afterwards.
        padded = self.source.extend_constant(None, 1) if self.source.len() < 4 * self.index.size + 64 else None
        if padded is not None:
            return padded.gather(np.where(missing, self.source.len(), self.index)).alias(name)
        return self.source.gather(np.where(missing, 0, self.index)).scatter(np.flatnonzero(missing), None).alias(name)


def labels(names: Sequence[str | None], codes: np.ndarray) -> Text:
    """Text from a table of labels by code (-1 = null)."""
    return Text(pl.Series(list(names), dtype=pl.Utf8), codes)


@dataclass(frozen=True)
class NullableInt:
    """An Int8 column with -1 for null (grades)."""

    values: np.ndarray


Column = np.ndarray | Text | NullableInt | pl.Series


@dataclass
class Assessments:
    """One toxicity's assessment rows (one per patient and time) as arrays: NaN is a null number, ``Text``
    and ``NullableInt`` hold their nulls as -1. ``first`` marks each patient's first assessment."""

    patient_ids: pl.Series
    patient: np.ndarray
    first: np.ndarray
    t: np.ndarray
    columns: dict[str, Column] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        value = self.columns[name]
        return value.values if isinstance(value, NullableInt) else value  # type: ignore[return-value]

    def text(self, name: str) -> Text:
        value = self.columns[name]
        assert isinstance(value, Text), name
        return value

    def add(self, **columns: Column) -> None:
        self.columns.update(columns)

    def frame(self, names: Collection[str]) -> pl.DataFrame:
        """The timeline frame with these columns (``patient_id`` and ``t`` included where named)."""
        series: list[pl.Series] = []
        floats: list[str] = []
        for name in names:
            if name == PID:
                series.append(self.patient_ids.alias(PID))
                continue
            value = self.t if name == "t" else self.columns[name]
            if isinstance(value, Text):
                series.append(value.series(name))
            elif isinstance(value, NullableInt):
                values = pl.Series(name, value.values, dtype=pl.Int8)
                missing = np.flatnonzero(value.values < 0)
                series.append(values.scatter(missing, None) if missing.size else values)
            elif isinstance(value, pl.Series):
                series.append(value.alias(name))
            else:
                if value.dtype.kind == "f":
                    floats.append(name)
                series.append(pl.Series(name, value))
        frame = pl.DataFrame(series)
        return frame.with_columns(pl.col(floats).fill_nan(None)) if floats else frame


@dataclass(frozen=True)
class ToxicityRows:
    """The event rows of one toxicity's items (in event order: by patient, then time) as arrays."""

    events: pl.DataFrame
    rows: np.ndarray  # row numbers in ``events``
    patient: np.ndarray  # position in the patient table
    start: np.ndarray  # (in this subset) the row number of the patient's first row
    t: np.ndarray
    num: np.ndarray
    item: np.ndarray  # codes of the ``item`` Enum
    categories: list[str]

    @property
    def height(self) -> int:
        return int(self.rows.shape[0])

    def code(self, item: str) -> int:
        return self.categories.index(item)

    def is_item(self, *items: str) -> np.ndarray:
        wanted = np.zeros(len(self.categories), dtype=np.bool_)
        wanted[[self.categories.index(i) for i in items]] = True
        return wanted[self.item]

    def text(self, column: str, subset: np.ndarray) -> pl.Series:
        """A text column of the events at these rows (of the subset)."""
        return self.events.get_column(column).gather(self.rows[subset])

    def last_of_time(self) -> np.ndarray:
        """Rows that are the last of their (patient, time): after them the state at that time is complete."""
        last = np.ones(self.height, dtype=np.bool_)
        last[:-1] = (self.t[1:] != self.t[:-1]) | (self.patient[1:] != self.patient[:-1])
        return last


def toxicity_rows(events: pl.DataFrame, patients: pl.DataFrame, items: Collection[str], cause: str) -> np.ndarray:
    """Row numbers of the rows of ``items`` (among them ``death``), a death only when due to ``cause``: a death
    from another cause is neither a finding nor an assessment (as one, it would carry an unresolved episode on
    to a death months later). The cause is read on the death rows alone (text over every event is a full pass)."""
    categories = events.schema["item"].categories.to_list()
    codes = events.get_column("item").to_physical().to_numpy()
    wanted = np.zeros(len(categories), dtype=np.bool_)
    wanted[[categories.index(i) for i in items]] = True
    selected = wanted[codes]
    deaths = np.flatnonzero(codes == categories.index("death"))
    if deaths.size:
        due = (events.get_column("cat").gather(deaths) == cause).fill_null(False).to_numpy()
        selected[deaths[~due]] = False
    return np.flatnonzero(selected)


def read_rows(events: pl.DataFrame, patients: pl.DataFrame, rows: np.ndarray) -> ToxicityRows:
    """The arrays of these event rows."""
    patient = patient_positions(events.get_column(PID).gather(rows), patients.get_column(PID))
    first = np.ones(rows.shape[0], dtype=np.bool_)
    first[1:] = patient[1:] != patient[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(rows.shape[0]), 0)) if rows.size else rows
    values = events.select(
        pl.col("t").gather(rows), pl.col("num").gather(rows).fill_null(np.nan), pl.col("item").gather(rows)
    )
    return ToxicityRows(
        events,
        rows,
        patient,
        start,
        values.get_column("t").to_numpy(),
        values.get_column("num").to_numpy(),
        values.get_column("item").to_physical().to_numpy(),
        events.schema["item"].categories.to_list(),
    )


def latest_signal_rows(
    rows: ToxicityRows, signals: Mapping[str, Collection[str] | np.ndarray], keep: np.ndarray
) -> dict[str, np.ndarray]:
    """At every row where ``keep`` holds: for each signal, the row (of the subset) of its latest row at or
    before it within the patient (-1 if none). A signal is the items whose rows it is, or a boolean per row."""
    names = list(signals)
    signals_of_item: list[list[int]] = [[] for _ in rows.categories]
    flagged = [k for k, s in enumerate(signals.values()) if isinstance(s, np.ndarray)]
    for k, signal in enumerate(signals.values()):
        if not isinstance(signal, np.ndarray):
            for item in signal:
                signals_of_item[rows.categories.index(item)].append(k)
    found = compiled(_latest_rows_loop)(
        rows.item,
        np.cumsum([0, *map(len, signals_of_item)], dtype=np.int64),
        np.array([k for ks in signals_of_item for k in ks], dtype=np.int64),
        np.stack([signals[names[k]] for k in flagged]) if flagged else np.zeros((1, rows.height), np.bool_),
        np.array(flagged, dtype=np.int64),
        rows.start,
        keep,
        len(names),
    )
    return {name: found[k] for k, name in enumerate(names)}


def at(values: np.ndarray, index: np.ndarray, missing: float | bool = np.nan) -> np.ndarray:
    """``values`` at ``index`` (``missing`` where the index is -1)."""
    return np.where(index >= 0, values[index], missing) if values.size else np.full(index.shape, missing)


def latest_valid(valid: np.ndarray, first: np.ndarray) -> np.ndarray:
    """For every row, the latest row at or before it, within its patient (``first`` marks each patient's first
    row), where ``valid`` holds; -1 if none: a forward fill as row numbers."""
    index = np.arange(valid.shape[0])
    start = np.maximum.accumulate(np.where(first, index, 0)) if valid.size else index
    latest = np.maximum.accumulate(np.where(valid, index, -1)) if valid.size else index
    return np.where(latest >= start, latest, -1)


def hours_since(now: np.ndarray, then: np.ndarray) -> np.ndarray:
    return (now - then) * HOURS_PER_DAY


@dataclass(frozen=True)
class Attributions:
    """The ``alternative_cause`` rows of a toxicity: which finding each names, and its cause text."""

    position: np.ndarray  # per row of the subset: its position among the attribution rows, -1 for others
    finding: pl.Series
    cause: pl.Series
    attributes: np.ndarray  # the row attributes its finding to a cause (not ``none``)

    def names(self, finding: str) -> np.ndarray:
        """Per row of the subset: an attribution row naming ``finding``."""
        named = (self.finding == finding).fill_null(False).to_numpy()
        return np.where(self.position >= 0, named[np.maximum(self.position, 0)], False) if named.size else (
            np.zeros(self.position.shape, np.bool_)
        )

    def cause_at(self, row: np.ndarray) -> Text:
        return Text(self.cause, at(self.position, row, -1).astype(np.int64))

    def attributed_at(self, row: np.ndarray) -> np.ndarray:
        return at(self.attributes, at(self.position, row, -1).astype(np.int64), False).astype(np.bool_)


def attributions(rows: ToxicityRows) -> Attributions:
    """Split ``finding:cause`` of the attribution rows only (the other categories are a million strings)."""
    alt = np.flatnonzero(rows.is_item("alternative_cause"))
    position = np.full(rows.height, -1, dtype=np.int64)
    position[alt] = np.arange(alt.size)
    parts = rows.text("cat", alt).str.split_exact(":", 1).struct.unnest()
    finding = parts.get_column("field_0").str.strip_chars().str.to_lowercase()
    cause = parts.get_column("field_1").str.strip_chars()
    attributes = (cause.is_not_null() & (cause.str.to_lowercase() != "none")).to_numpy()
    return Attributions(position, finding, cause, attributes)


def _patient_values(patients: pl.DataFrame, column: str) -> np.ndarray:
    return patients.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy()


def _assessments(rows: ToxicityRows, assessment: np.ndarray) -> Assessments:
    patient = rows.patient[assessment]
    first = np.ones(assessment.shape[0], dtype=np.bool_)
    first[1:] = patient[1:] != patient[:-1]
    return Assessments(rows.events.get_column(PID).gather(rows.rows[assessment]), patient, first, rows.t[assessment])


def crs_state(
    events: pl.DataFrame, patients: pl.DataFrame, vocabulary: Vocabulary, config: GradingConfig
) -> Assessments:
    """State relevant to CRS at every CRS assessment time, for every patient in ``events``."""
    c = config.crs
    pressors = vocabulary.names_where(vasopressor=True)
    anticytokine = vocabulary.names_where(anti_cytokine=True)
    antipyretic = vocabulary.names_where(antipyretic=True)
    waiver_items = anticytokine + (antipyretic if c.waiver_drugs == "anticytokine_or_antipyretic" else [])
    items = [
        "temperature",
        "sbp",
        "map",
        "oxygen",
        "oxygen_flow",
        "fio2",
        "fluid_bolus",
        "alternative_cause",
        "death",
        "il6",
        "crp",
        *pressors,
        *anticytokine,
        *antipyretic,
    ]
    rows = read_rows(events, patients, toxicity_rows(events, patients, items, "crs"))
    t, num = rows.t, rows.num
    alt = attributions(rows)
    findings = ("fever", "hypotension", "hypoxia")
    named = {f: alt.names(f) for f in findings}
    # A temperature is a (CRS) fever unless a fever attribution is in force at that row.
    fever_attributed_here = alt.attributed_at(latest_valid(named["fever"], rows.start == np.arange(rows.height)))
    fever_row = rows.is_item("temperature") & (num >= c.fever_celsius) & ~fever_attributed_here

    age = _patient_values(patients, "age_years")[rows.patient]
    pediatric = ~np.isnan(age) & (age <= c.pediatric_max_age_years)
    sbp_threshold = np.where(
        pediatric, c.pediatric_sbp_base_mm_hg + c.pediatric_sbp_per_year_mm_hg * np.floor(age), c.hypotension_sbp_mm_hg
    )
    low_sbp = num < sbp_threshold
    low_map = num < c.hypotension_map_mm_hg if c.hypotension_map_mm_hg else np.zeros(rows.height, np.bool_)

    signals: dict[str, Collection[str] | np.ndarray] = {
        "fever": fever_row,
        **{f"alt_{f}": named[f] for f in findings},
        "temp": ["temperature"],
        "sbp": ["sbp"],
        "map": ["map"],
        "o2": ["oxygen"],
        "flow": ["oxygen_flow"],
        "fio2": ["fio2"],
        **{p: [p] for p in pressors},
        "waiver": waiver_items,
        "antipyretic": antipyretic,
        "death": ["death"],
        "alt": ["alternative_cause"],
        "il6": ["il6"],
        "crp": ["crp"],
    }
    assessment_rows = rows.last_of_time()
    latest = latest_signal_rows(rows, signals, assessment_rows)
    state = _assessments(rows, np.flatnonzero(assessment_rows))

    def t_of(signal: str) -> np.ndarray:
        return at(t, latest[signal])

    def num_of(signal: str) -> np.ndarray:
        return at(num, latest[signal])

    cat = rows.events.get_column("cat")
    device = Text(cat, at(rows.rows, latest["o2"], -1).astype(np.int64))
    state.add(
        fever_t=t_of("fever"),
        fever_value=num_of("fever"),
        temp_t=t_of("temp"),
        temp_value=num_of("temp"),
        temp_is_fever=(latest["temp"] == latest["fever"]) & (latest["temp"] >= 0),
        sbp_t=t_of("sbp"),
        sbp_value=num_of("sbp"),
        sbp_low=at(low_sbp, latest["sbp"], False).astype(np.bool_),
        map_t=t_of("map"),
        map_value=num_of("map"),
        map_low=at(low_map, latest["map"], False).astype(np.bool_),
        o2_device=device,
        o2_device_code=device.lookup(dict(zip(DEVICES, range(len(DEVICES)), strict=True)), DEVICE_UNKNOWN, DEVICE_NONE),
        o2_device_t=t_of("o2"),
        o2_flow=num_of("flow"),
        o2_flow_t=t_of("flow"),
        fio2=num_of("fio2"),
        fio2_t=t_of("fio2"),
        **{f"rate_{p}": np.nan_to_num(num_of(p), nan=0.0) for p in pressors},
        **{f"rate_{p}_t": t_of(p) for p in pressors},
        waiver_drug_t=t_of("waiver"),
        waiver_drug=Text(rows.events.get_column("item"), at(rows.rows, latest["waiver"], -1).astype(np.int64)),
        antipyretic_t=t_of("antipyretic"),
        death_cause=Text(cat, at(rows.rows, latest["death"], -1).astype(np.int64)),
        death_t=t_of("death"),
        alt_t=t_of("alt"),
        **{f"{lab}_falling": at(_falling(rows, lab), latest[lab], -1).astype(np.int8) for lab in ("il6", "crp")},
        **{f"alt_{f}": alt.cause_at(latest[f"alt_{f}"]) for f in findings},
        **{f"{f}_attributed": alt.attributed_at(latest[f"alt_{f}"]) for f in findings},
    )
    _latest_blood_pressure(state)
    _derive_support(state, pressors, config)
    return state


#: Codes of the oxygen devices the CRS scales name (``DEVICE_UNKNOWN``: another text; ``DEVICE_NONE``: no device).
DEVICES = tuple(load_scale("crs_astct2019").table("oxygen_device_grade"))
DEVICE_UNKNOWN, DEVICE_NONE = len(DEVICES), len(DEVICES) + 1


def device_codes(names: Collection[str]) -> np.ndarray:
    """The codes of these devices, for ``np.isin`` on ``o2_device_code``."""
    return np.array([DEVICES.index(n) for n in names], dtype=np.int64)


def _falling(rows: ToxicityRows, lab: str) -> np.ndarray:
    """On each ``lab`` row, whether its value is below the patient's previous ``lab`` value (1/0; -1 = unknown:
    the first value, or either value missing)."""
    lab_rows = np.flatnonzero(rows.is_item(lab))
    falling = np.full(rows.height, -1, dtype=np.int8)
    if lab_rows.size > 1:
        value, patient = rows.num[lab_rows], rows.patient[lab_rows]
        known = (patient[1:] == patient[:-1]) & ~np.isnan(value[1:]) & ~np.isnan(value[:-1])
        falling[lab_rows[1:][known]] = value[1:][known] < value[:-1][known]
    return falling


def _latest_blood_pressure(state: Assessments) -> None:
    """The latest blood-pressure measurement (SBP and/or MAP taken at the same time): low if either is
    below its threshold; the low one (else SBP) is the one shown as evidence."""
    bp_t = np.fmax(state["sbp_t"], state["map_t"])
    sbp_now, map_now = state["sbp_t"] == bp_t, state["map_t"] == bp_t
    sbp_low, map_low = sbp_now & state["sbp_low"], map_now & state["map_low"]
    show_sbp = sbp_now & (sbp_low | ~map_low)
    state.add(
        bp_t=bp_t,
        bp_low=sbp_low | map_low,
        bp_item=labels(["sbp", "map"], np.where(show_sbp, 0, np.where(map_now, 1, -1))),
        bp_value=np.where(show_sbp, state["sbp_value"], np.where(map_now, state["map_value"], np.nan)),
    )


def _derive_support(state: Assessments, pressors: list[str], config: GradingConfig) -> None:
    c = config.crs
    scale = load_scale("crs_astct2019")
    device_grade = scale.table("oxygen_device_grade")
    excluded = set(scale.table("not_counted_for_multiple_vasopressors"))
    device = state["o2_device_code"]
    # A flow belongs to the current device only if it was recorded with it or later.
    flow = np.where(np.isnan(state["o2_device_t"]) | (state["o2_flow_t"] >= state["o2_device_t"]), state["o2_flow"],
                    np.nan)
    on_oxygen = np.where(device != DEVICE_NONE, device != DEVICES.index("room_air"), np.nan_to_num(flow, nan=0.0) > 0)
    tiers = np.array([device_grade[d] for d in DEVICES] + [-1, -1], dtype=np.int8)
    running = {p: state[f"rate_{p}"] > 0 for p in pressors}
    t = state.t
    state.add(
        o2_flow_current=flow,
        on_oxygen=on_oxygen,
        o2_device_tier=tiers[device],
        n_vasopressors=sum(
            (running[p].astype(np.int8) for p in pressors if p not in excluded), np.zeros(t.shape, np.int8)
        ),
        any_vasopressor=np.logical_or.reduce([running[p] for p in pressors]) if pressors else np.zeros(t.shape, bool),
        febrile=hours_since(t, state["fever_t"]) <= c.fever_window_hours,
        temp_known=hours_since(t, state["temp_t"]) <= c.fever_window_hours,
        bp_known=hours_since(t, state["bp_t"]) <= c.bp_validity_hours,
    )


def icans_state(events: pl.DataFrame, patients: pl.DataFrame, config: GradingConfig) -> Assessments:
    """State relevant to ICANS at every neurological assessment time."""
    scale = load_scale("icans_astct2019")
    ice_items: list[str] = scale.table("ice_items")
    capd_items: list[str] = scale.table("capd_items")
    domains = ["consciousness", "global_aphasia", "seizure", "motor_weakness", "cerebral_edema", "icp_sign"]
    items = ["ice_score", "capd_score", *ice_items, *capd_items, *domains, "alternative_cause", "death"]
    selected = toxicity_rows(events, patients, items, "icans")
    # Attributions count (and make an assessment) only when they name a neurological finding.
    codes = events.get_column("item").to_physical().to_numpy()[selected]
    alt_rows = np.flatnonzero(codes == events.schema["item"].categories.to_list().index("alternative_cause"))
    finding = events.get_column("cat").gather(selected[alt_rows]).str.to_lowercase().str.extract(r"^([a-z_]+):", 1)
    keep = np.ones(selected.shape[0], dtype=np.bool_)
    keep[alt_rows] = finding.is_in(NEURO_FINDINGS).fill_null(False).to_numpy()
    rows = read_rows(events, patients, selected[keep])
    alt = attributions(rows)

    # The value of each item recorded at each assessment time (the last one, if repeated): the latest row of
    # the item, if it is at this time.
    numeric = ("ice_score", "capd_score", *ice_items, *capd_items)
    signals: dict[str, Collection[str] | np.ndarray] = {
        **{name: [name] for name in (*numeric, *domains)},
        "death": ["death"],
        **{f"alt_{f}": alt.names(f) for f in NEURO_FINDINGS},
    }
    assessment_rows = rows.last_of_time()
    latest = latest_signal_rows(rows, signals, assessment_rows)
    state = _assessments(rows, np.flatnonzero(assessment_rows))
    here = {name: np.where(at(rows.t, row) == state.t, row, -1) for name, row in latest.items()}
    value = {name: at(rows.num, here[name]) for name in numeric}
    cat_known = ~rows.events.get_column("cat").gather(rows.rows).is_null().to_numpy()

    stamps: dict[str, np.ndarray] = {}  # per stamped signal: whether it was observed at this assessment
    tools = {"ice": ice_items, "capd": capd_items}
    incomplete: dict[str, np.ndarray] = {}
    for tool, tool_items in tools.items():
        present = np.stack([~np.isnan(value[i]) for i in tool_items])
        absent_mask = ((~present).astype(np.int64) << np.arange(len(tool_items))[:, None]).sum(axis=0)
        total = value[tool_items[0]].copy()
        for item in tool_items[1:]:
            total = total + value[item]
        score = value[f"{tool}_score"]
        from_items = np.where(present.all(axis=0), total, np.nan)
        stamps[tool] = ~np.isnan(np.where(np.isnan(score), from_items, score))
        state.add(**{f"{tool}_here": np.where(np.isnan(score), from_items, score)})
        incomplete[tool] = np.where(np.isnan(score) & present.any(axis=0) & (absent_mask != 0), absent_mask, -1)
        stamps[f"{tool}_incomplete"] = incomplete[tool] >= 0
    for name in (*domains, "death"):
        stamps[name] = (here[name] >= 0) & at(cat_known, here[name], False).astype(np.bool_)
    for f in NEURO_FINDINGS:
        stamps[f"alt_{f}"] = here[f"alt_{f}"] >= 0
    stamped = {name: latest_valid(valid, state.first) for name, valid in stamps.items()}

    cat = rows.events.get_column("cat")
    for tool in tools:
        row = stamped[tool]
        state.add(**{f"{tool}_value": at(state[f"{tool}_here"], row), f"{tool}_t": at(state.t, row)})
        state.add(**{f"{tool}_incomplete_last": at(incomplete[tool], stamped[f"{tool}_incomplete"], -1)})
    for name in (*domains, "death"):
        source_row = at(here[name], stamped[name], -1).astype(np.int64)
        label = "death_cause" if name == "death" else f"{name}_value"
        state.add(**{label: Text(cat, at(rows.rows, source_row, -1).astype(np.int64)), f"{name}_t":
                     at(state.t, stamped[name])})
    for f in NEURO_FINDINGS:
        source_row = at(here[f"alt_{f}"], stamped[f"alt_{f}"], -1).astype(np.int64)
        state.add(**{f"alt_{f}": alt.cause_at(source_row), f"{f}_attributed": alt.attributed_at(source_row)})
    i = config.icans
    t = state.t
    state.add(
        **{
            f"{name}_fresh": hours_since(t, state[f"{name}_t"]) <= i.neuro_validity_hours
            for name in ("ice", "capd", "consciousness", "global_aphasia")
        },
        seizure_fresh=hours_since(t, state["seizure_t"]) <= i.seizure_validity_hours,
        age_years=_patient_values(patients, "age_years")[state.patient],
    )
    return state
