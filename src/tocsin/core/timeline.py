"""Timeline: the patient's state at every assessment time, built column-wise for a whole batch.

Every state column is a forward fill within the patient ("the last value seen", "the last time this
happened"), so one pass over sorted events serves one patient or ten thousand. How long an observation
stays valid is a parameter of the grading config:

* support is a state until changed: an oxygen device until the next ``oxygen`` row, each vasopressor
  until a row with rate 0;
* a fever counts for ``crs.fever_window_hours`` after it was measured; a blood pressure for
  ``crs.bp_validity_hours``; ICE/CAPD and consciousness for ``icans.neuro_validity_hours``; a seizure
  for ``icans.seizure_validity_hours`` unless a later row says ``none``;
* an ``alternative_cause`` (``finding:cause``) holds until a later ``finding:none``;
* treatment given so far (anti-cytokine or antipyretic) is tracked with its drug and time.

Assessment times are the distinct times at which any item relevant to the toxicity was recorded; the
state at that time includes every row at that time.
"""

from __future__ import annotations

import polars as pl

from tocsin.config import GradingConfig
from tocsin.core.lookup import per_patient
from tocsin.core.segments import ROW, SEGMENT_START, ffill, last_index, latest_rows, with_segment_start
from tocsin.criteria import load_scale
from tocsin.vocabulary import Vocabulary

PID = "patient_id"
HOURS_PER_DAY = 24.0
#: Findings an ``alternative_cause`` row can name for ICANS (``consciousness:sedation``...).
NEURO_FINDINGS = ("ice", "capd", "consciousness", "seizure", "motor_weakness", "cerebral_edema", "icp_sign")


def last_time(condition: pl.Expr) -> pl.Expr:
    """Time of the most recent row (at or before this one) where ``condition`` held."""
    return ffill(pl.when(condition).then(pl.col("t")))


def _attributed(finding: str) -> pl.Expr:
    col = pl.col(f"alt_{finding}")
    return col.is_not_null() & (col.str.to_lowercase() != "none")


def last_of_time() -> pl.Expr:
    """The row is the last of its (patient, time): after forward fills it holds the state at that time."""
    return ((pl.col("t") != pl.col("t").shift(-1)) | (pl.col(PID) != pl.col(PID).shift(-1))).fill_null(True)


def last_row_per_time(df: pl.DataFrame) -> pl.DataFrame:
    """Keep the last row of each (patient, time)."""
    return df.filter(last_of_time())


#: The event columns the timelines read.
STATE_COLUMNS = [PID, "t", "item", "num", "cat"]


def toxicity_events(events: pl.DataFrame, items: list[str], cause: str) -> pl.DataFrame:
    """The rows of ``items`` (among them ``death``) with the columns a state reads, a death only when due to
    ``cause``: a death from another cause is neither a finding nor an assessment (as one, it would carry an
    unresolved episode on to a death months later).

    Only the state's columns are carried (the events frame is wide, and this is a million rows per chunk);
    the cause is read on the death rows alone (a text comparison over every event is a full pass)."""
    wanted = events.select(pl.col("item").is_in(items)).to_series()
    deaths = events.select(pl.arg_where(pl.col("item") == "death")).to_series()
    other_cause = deaths.filter(~(events.get_column("cat").gather(deaths) == cause).fill_null(False))
    if other_cause.len():
        wanted = wanted.scatter(other_cause, False)
    return events.select(STATE_COLUMNS).filter(wanted)


def crs_state(
    events: pl.DataFrame, patients: pl.DataFrame, vocabulary: Vocabulary, config: GradingConfig
) -> pl.DataFrame:
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

    relevant = toxicity_events(events, items, "crs")
    df = with_segment_start(relevant.with_columns(per_patient(patients, "age_years", rows=relevant.height)), [PID])
    age = pl.col("age_years")
    sbp_threshold = (
        pl.when(age.is_not_null() & (age <= c.pediatric_max_age_years))
        .then(c.pediatric_sbp_base_mm_hg + c.pediatric_sbp_per_year_mm_hg * age.floor())
        .otherwise(c.hypotension_sbp_mm_hg)
    )
    is_alt = pl.col("item") == "alternative_cause"
    # Split only the attribution rows' text: the other categories (devices, drugs...) are a million strings.
    alt_text = pl.when(is_alt).then(pl.col("cat")).str.split_exact(":", 1)
    df = df.with_columns(
        sbp_threshold.alias("sbp_threshold"),
        alt_text.struct.field("field_0").str.strip_chars().str.to_lowercase().alias("alt_finding"),
        alt_text.struct.field("field_1").str.strip_chars().alias("alt_cause"),
    )
    # Stage 1: for each signal, the index of its latest row (within the patient).
    findings = ("fever", "hypotension", "hypoxia")
    df = df.with_columns(*[last_index(is_alt & (pl.col("alt_finding") == f)).alias(f"i_alt_{f}") for f in findings])
    df = df.with_columns(*[pl.col("alt_cause").gather(pl.col(f"i_alt_{f}")).alias(f"alt_{f}") for f in findings])
    fever_row = (pl.col("item") == "temperature") & (pl.col("num") >= c.fever_celsius) & ~_attributed("fever")
    low_sbp = (pl.col("item") == "sbp") & (pl.col("num") < pl.col("sbp_threshold"))
    low_map = (
        (pl.col("item") == "map") & (pl.col("num") < c.hypotension_map_mm_hg)
        if c.hypotension_map_mm_hg
        else pl.lit(False)
    )
    # A signal is a condition, or the items whose rows it is (read from the item codes, see latest_rows).
    signals: dict[str, pl.Expr | list[str]] = {
        "fever": fever_row,
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
    df = df.with_columns(
        low_sbp.alias("sbp_low_here"),
        low_map.alias("map_low_here"),
        *[_falling(df, lab).alias(f"{lab}_falling_here") for lab in ("il6", "crp")],
    )

    # Stage 2: the state at each assessment time = the values of those rows. Only the last row of each
    # time is an assessment: the latest row of every signal is found there alone, and the values are
    # gathered from the full rows.
    source = {
        c: df.get_column(c)
        for c in ("t", "num", "cat", "item", "sbp_low_here", "map_low_here", "il6_falling_here", "crp_falling_here")
    }
    indexes = [f"i_{name}" for name in signals]
    latest = latest_rows(df, {f"i_{name}": cond for name, cond in signals.items()}, last_of_time())
    df = pl.concat(
        [last_row_per_time(df.select(PID, "t", "age_years", *[f"alt_{f}" for f in findings])), latest],
        how="horizontal",
    )

    def at(column: str, signal: str) -> pl.Expr:
        return pl.lit(source[column]).gather(pl.col(f"i_{signal}"))

    df = df.with_columns(
        at("t", "fever").alias("fever_t"),
        at("num", "fever").alias("fever_value"),
        at("t", "temp").alias("temp_t"),
        at("num", "temp").alias("temp_value"),
        (pl.col("i_temp") == pl.col("i_fever")).fill_null(False).alias("temp_is_fever"),
        *[
            at(column, vital).alias(f"{vital}_{name}")
            for vital in ("sbp", "map")
            for column, name in (("t", "t"), ("num", "value"), (f"{vital}_low_here", "low"))
        ],
        at("cat", "o2").alias("o2_device"),
        at("t", "o2").alias("o2_device_t"),
        at("num", "flow").alias("o2_flow"),
        at("t", "flow").alias("o2_flow_t"),
        at("num", "fio2").alias("fio2"),
        at("t", "fio2").alias("fio2_t"),
        *[at("num", p).fill_null(0.0).alias(f"rate_{p}") for p in pressors],
        *[at("t", p).alias(f"rate_{p}_t") for p in pressors],
        at("t", "waiver").alias("waiver_drug_t"),
        at("item", "waiver").alias("waiver_drug"),
        at("t", "antipyretic").alias("antipyretic_t"),
        at("cat", "death").alias("death_cause"),
        at("t", "death").alias("death_t"),
        at("t", "alt").alias("alt_t"),
        at("il6_falling_here", "il6").alias("il6_falling"),
        at("crp_falling_here", "crp").alias("crp_falling"),
    ).drop(indexes)
    return _derive_support(_latest_blood_pressure(df), pressors, config)


def _falling(df: pl.DataFrame, lab: str) -> pl.Series:
    """On each ``lab`` row, whether its value is below the patient's previous ``lab`` value (else null).

    Worked out on that lab's rows alone (a daily value among a million CRS rows) and placed back by row
    number: a fill over every row per lab cost more than the rest of the step."""
    rows = df.select(ROW, SEGMENT_START, "item", "num").filter(pl.col("item") == lab)
    same_patient = pl.col(SEGMENT_START) == pl.col(SEGMENT_START).shift(1)
    falling = rows.select(pl.when(same_patient).then(pl.col("num") < pl.col("num").shift(1))).to_series()
    return pl.repeat(None, df.height, dtype=pl.Boolean, eager=True).scatter(rows.get_column(ROW), falling)


def _latest_blood_pressure(df: pl.DataFrame) -> pl.DataFrame:
    """The latest blood-pressure measurement (SBP and/or MAP taken at the same time): low if either is
    below its threshold; the low one (else SBP) is the one shown as evidence."""
    # bp_t first, on its own: eager mode has no common subexpressions, and every condition below names it
    # (inlined, the expressions evaluated its max a dozen times: 30 ms instead of 10 per 388 k assessments).
    df = df.with_columns(pl.max_horizontal("sbp_t", "map_t").alias("bp_t"))
    sbp_now = (pl.col("sbp_t") == pl.col("bp_t")).fill_null(False)
    map_now = (pl.col("map_t") == pl.col("bp_t")).fill_null(False)
    sbp_low = sbp_now & pl.col("sbp_low").fill_null(False)
    map_low = map_now & pl.col("map_low").fill_null(False)
    show_sbp = sbp_now & (sbp_low | ~map_low)
    return df.with_columns(
        (sbp_low | map_low).alias("bp_low"),
        pl.when(show_sbp).then(pl.lit("sbp")).when(map_now).then(pl.lit("map")).alias("bp_item"),
        pl.when(show_sbp).then(pl.col("sbp_value")).when(map_now).then(pl.col("map_value")).alias("bp_value"),
    )


def _derive_support(df: pl.DataFrame, pressors: list[str], config: GradingConfig) -> pl.DataFrame:
    c = config.crs
    scale = load_scale("crs_astct2019")
    device_grade = scale.table("oxygen_device_grade")
    excluded = set(scale.table("not_counted_for_multiple_vasopressors"))
    counted = [p for p in pressors if p not in excluded]
    device_tier = pl.col("o2_device").replace_strict(device_grade, default=None, return_dtype=pl.Int8)
    # A flow belongs to the current device only if it was recorded with it or later.
    flow = pl.when(pl.col("o2_device_t").is_null() | (pl.col("o2_flow_t") >= pl.col("o2_device_t"))).then(
        pl.col("o2_flow")
    )
    on_oxygen = (
        pl.when(pl.col("o2_device").is_not_null())
        .then(pl.col("o2_device") != "room_air")
        .otherwise(flow.fill_null(0) > 0)
    )
    return df.with_columns(
        flow.alias("o2_flow_current"),
        on_oxygen.alias("on_oxygen"),
        device_tier.alias("o2_device_tier"),
        pl.sum_horizontal([(pl.col(f"rate_{p}") > 0).cast(pl.Int8) for p in counted]).alias("n_vasopressors"),
        pl.any_horizontal([pl.col(f"rate_{p}") > 0 for p in pressors]).alias("any_vasopressor"),
        ((pl.col("t") - pl.col("fever_t")) * HOURS_PER_DAY <= c.fever_window_hours).fill_null(False).alias("febrile"),
        ((pl.col("t") - pl.col("temp_t")) * HOURS_PER_DAY <= c.fever_window_hours).fill_null(False).alias("temp_known"),
        ((pl.col("t") - pl.col("bp_t")) * HOURS_PER_DAY <= c.bp_validity_hours).fill_null(False).alias("bp_known"),
        _attributed("fever").alias("fever_attributed"),
        _attributed("hypotension").alias("hypotension_attributed"),
        _attributed("hypoxia").alias("hypoxia_attributed"),
    )


def icans_state(events: pl.DataFrame, patients: pl.DataFrame, config: GradingConfig) -> pl.DataFrame:
    """State relevant to ICANS at every neurological assessment time."""
    scale = load_scale("icans_astct2019")
    ice_items: list[str] = scale.table("ice_items")
    capd_items: list[str] = scale.table("capd_items")
    domains = ["consciousness", "global_aphasia", "seizure", "motor_weakness", "cerebral_edema", "icp_sign"]
    items = ["ice_score", "capd_score", *ice_items, *capd_items, *domains, "alternative_cause", "death"]
    neuro_attribution = pl.col("cat").str.to_lowercase().str.extract(r"^([a-z_]+):", 1).is_in(NEURO_FINDINGS)
    neuro = toxicity_events(events, items, "icans")
    neuro = neuro.filter((pl.col("item") != "alternative_cause") | neuro_attribution.fill_null(False))

    # The value of each item recorded at each assessment time (the last one, if repeated): the latest
    # row of the item, if it is at this time. Column-wise like the CRS state; no per-time group-by.
    neuro = with_segment_start(
        neuro.with_columns(
            pl.when(pl.col("item") == "alternative_cause")
            .then(pl.col("cat").str.split_exact(":", 1).struct.field("field_0").str.strip_chars().str.to_lowercase())
            .alias("alt_finding")
        ),
        [PID],
    )
    signals: dict[str, tuple[pl.Expr | list[str], str]] = {
        **{name: ([name], "num") for name in ("ice_score", "capd_score", *ice_items, *capd_items)},
        **{name: ([name], "cat") for name in domains},
        "death_here": (["death"], "cat"),
        **{f"alt_raw_{f}": (pl.col("alt_finding") == f, "cat") for f in NEURO_FINDINGS},
    }
    latest = latest_rows(neuro, {f"i_{name}": condition for name, (condition, _) in signals.items()}, last_of_time())
    source = {column: neuro.get_column(column) for column in ("t", "num", "cat")}

    def at(column: str, name: str) -> pl.Expr:
        return pl.lit(source[column]).gather(pl.col(f"i_{name}"))

    per_time = pl.concat([last_row_per_time(neuro.select(PID, "t")), latest], how="horizontal").select(
        PID,
        "t",
        *[
            pl.when(at("t", name) == pl.col("t")).then(at(column, name)).alias(name)
            for name, (_, column) in signals.items()
        ],
    )

    def absent(names: list[str]) -> pl.Expr:
        return pl.concat_str(
            [pl.when(pl.col(n).is_null()).then(pl.lit(n)) for n in names], separator="; ", ignore_nulls=True
        )

    def given(names: list[str]) -> pl.Expr:
        return pl.any_horizontal([pl.col(n).is_not_null() for n in names])

    per_time = per_time.with_columns(
        absent(ice_items).alias("ice_items_missing"),
        absent(capd_items).alias("capd_items_missing"),
        given(ice_items).alias("ice_items_given"),
        given(capd_items).alias("capd_items_given"),
        pl.sum_horizontal(ice_items).alias("ice_items_sum"),
        pl.sum_horizontal(capd_items).alias("capd_items_sum"),
    )
    ice_from_items = pl.when(pl.col("ice_items_given") & (pl.col("ice_items_missing") == "")).then(
        pl.col("ice_items_sum")
    )
    capd_from_items = pl.when(pl.col("capd_items_given") & (pl.col("capd_items_missing") == "")).then(
        pl.col("capd_items_sum")
    )
    df = per_time.with_columns(
        pl.coalesce("ice_score", ice_from_items).alias("ice_here"),
        pl.coalesce("capd_score", capd_from_items).alias("capd_here"),
        pl.when(pl.col("ice_score").is_null() & pl.col("ice_items_given") & (pl.col("ice_items_missing") != ""))
        .then(pl.col("ice_items_missing"))
        .alias("ice_incomplete"),
        pl.when(pl.col("capd_score").is_null() & pl.col("capd_items_given") & (pl.col("capd_items_missing") != ""))
        .then(pl.col("capd_items_missing"))
        .alias("capd_incomplete"),
    ).with_columns(per_patient(patients, "age_years", rows=per_time.height))
    df = with_segment_start(df, [PID])

    df = df.with_columns(
        ffill(pl.col(f"alt_raw_{f}").str.split_exact(":", 1).struct.field("field_1").str.strip_chars()).alias(
            f"alt_{f}"
        )
        for f in NEURO_FINDINGS
    )

    def stamp(name: str, column: str) -> list[pl.Expr]:
        return [
            ffill(pl.col(column)).alias(f"{name}_value"),
            last_time(pl.col(column).is_not_null()).alias(f"{name}_t"),
        ]

    df = df.with_columns(
        *stamp("ice", "ice_here"),
        *stamp("capd", "capd_here"),
        *[e for d in domains for e in stamp(d, d)],
        ffill(pl.col("ice_incomplete")).alias("ice_incomplete_last"),
        ffill(pl.col("capd_incomplete")).alias("capd_incomplete_last"),
        ffill(pl.col("death_here")).alias("death_cause"),
        last_time(pl.col("death_here").is_not_null()).alias("death_t"),
    )
    i = config.icans
    fresh = {
        name: ((pl.col("t") - pl.col(f"{name}_t")) * HOURS_PER_DAY <= i.neuro_validity_hours).fill_null(False)
        for name in ("ice", "capd", "consciousness", "global_aphasia")
    }
    seizure_fresh = ((pl.col("t") - pl.col("seizure_t")) * HOURS_PER_DAY <= i.seizure_validity_hours).fill_null(False)
    return df.with_columns(
        *[v.alias(f"{k}_fresh") for k, v in fresh.items()],
        seizure_fresh.alias("seizure_fresh"),
        *[_attributed(f).alias(f"{f}_attributed") for f in NEURO_FINDINGS],
    )
