"""Grading configuration: every local decision the criteria leave open, as named, documented parameters.

Defaults follow the primary consensus texts (``../shared/clinical/criteria.md``); a centre overrides any
of them in a TOML or YAML file (``tocsin grade --config FILE``). Every output names the configuration it
ran under (name and a hash of all values), so two results can always be told apart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CrsScaleName = Literal["astct2019", "lee2014"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrsConfig(_Section):
    scale: CrsScaleName = "astct2019"
    fever_celsius: float = Field(38.0, description="Fever is temperature >= this (ASTCT 2019).")
    fever_window_hours: float = Field(
        24.0,
        ge=0,
        description="A fever counts at every assessment up to this many hours after it was "
        "measured (CRS is graded per day from the day's Tmax in the source papers and trials). 0 = only "
        "at the time of the reading.",
    )
    waiver_drugs: Literal["anticytokine_or_antipyretic", "anticytokine_only"] = Field(
        "anticytokine_or_antipyretic",
        description="Which treatments lift the fever requirement once CRS "
        "has begun. ASTCT full text: 'antipyretic or anticytokine therapy'; SITC reproduction names only "
        "tocilizumab or steroids (criteria.md §1.2).",
    )
    low_flow_max_l_min: float = Field(
        6.0,
        description="Nasal cannula at or below this flow is low flow "
        "(grade 2); above it, high flow (grade 3). ASTCT: <= 6 L/min.",
    )
    hypotension_sbp_mm_hg: float = Field(
        90.0,
        description="Adults and children > 10 y: SBP below this "
        "is hypotension (Mahadeo 2019 for > 10 y; adult practice).",
    )
    hypotension_map_mm_hg: float | None = Field(
        65.0, description="MAP below this is hypotension (adult practice); 0 (or null in YAML) disables the MAP rule."
    )
    pediatric_sbp_base_mm_hg: float = Field(
        70.0, description="Children 1-10 y: SBP < base + per_year × age (Mahadeo 2019, doi:10.1038/s41571-018-0075-2)."
    )
    pediatric_sbp_per_year_mm_hg: float = 2.0
    pediatric_max_age_years: float = Field(10.0, description="Above this age the adult SBP threshold applies.")
    bp_validity_hours: float = Field(
        12.0,
        gt=0,
        description="A blood pressure describes the patient for "
        "this long; after that the hypotension domain is 'needs sbp or map'.",
    )
    lee2014_noninvasive_is_ventilator: bool = Field(
        True, description="Lee 2014 grade 4 'ventilator support': count CPAP/BiPAP as ventilator support."
    )
    lee2014_estimate_nasal_fio2: bool = Field(
        False,
        description="Lee 2014 without a recorded FiO2: false = nasal cannula and blow-by count as "
        "< 40 % (grade 2); true = estimate 21 % + lee2014_fio2_per_l_min_nasal × flow.",
    )
    lee2014_fio2_per_l_min_nasal: float = Field(
        4.0, description="FiO2 added per L/min of nasal cannula flow when estimating (rule of thumb)."
    )


class IcansConfig(_Section):
    ice_min_age_years: float = Field(12.0, description="ICE from this age, CAPD below (ASTCT: ≥ 12 y).")
    neuro_validity_hours: float = Field(
        24.0, gt=0, description="An ICE/CAPD score or level of consciousness describes the patient for this long."
    )
    seizure_validity_hours: float = Field(
        24.0, gt=0, description="A seizure counts for this long after it is recorded, unless a later row says 'none'."
    )


class EpisodeConfig(_Section):
    crs_resolution: Literal["afebrile_off_support", "fever_gone_cytokines_falling"] = Field(
        "afebrile_off_support",
        description="afebrile_off_support: afebrile without antipyretics, off "
        "vasopressors and off supplemental O2 (common trial definition, criteria.md §1.2); "
        "fever_gone_cytokines_falling: no fever and IL-6 (or CRP) falling (seed 001, "
        "doi:10.3389/fimmu.2025.1530623).",
    )
    crs_resolution_hours: float = Field(
        24.0,
        ge=0,
        description="How long the resolution criteria must "
        "hold before the episode is resolved; a new CRS after that is a "
        "new episode.",
    )
    icans_resolution_hours: float = Field(24.0, ge=0, description="ICANS grade 0 for this long resolves the episode.")


KineticAssay = Literal["car_t_copies", "car_t_cells", "car_t_percent"]


class KineticsConfig(_Section):
    """Non-compartmental analysis of CAR-T levels (docs/kinetics.md; criteria.md §7; criteria/kinetics_nca.yaml)."""

    blq_rule: Literal["pre_peak_zero_post_peak_excluded", "pre_peak_zero_post_peak_half_lloq", "all_zero"] = Field(
        "pre_peak_zero_post_peak_excluded",
        description="Values below the limit of quantification (BLQ). Before Tmax (or when nothing is "
        "quantifiable) a BLQ is always 0. After Tmax: pre_peak_zero_post_peak_excluded drops it (criteria.md §7 "
        "'pre-Cmax BLQ = 0; post-Cmax BLQ excluded'; FDA/EMA NCA convention), pre_peak_zero_post_peak_half_lloq "
        "sets it to LLOQ/2 (criteria.md §7 alternative), all_zero sets it to 0 (PKNCA-style 'keep as 0').",
    )
    auc_end_day: float = Field(
        28.0,
        gt=0,
        description="AUC window end in days after infusion (AUC0-28d, criteria.md §7; Mueller 2018, Awasthi "
        "2020). AUC is null when no usable value reaches this day: never extrapolated (criteria.md §7).",
    )
    persistence_days: list[float] = Field(
        [90.0, 180.0],
        description="Days at which persistence (a quantifiable level) is reported, one column each "
        "(persistence_d90...). Month 3 and 6 are the usual CAR-T persistence visits (Tocsin decision).",
    )
    persistence_window_days: float = Field(
        14.0,
        ge=0,
        description="Persistence at day D reads the sample nearest to D within +/- this many days (the later "
        "one on a tie); no sample in the window = unknown (null). Tocsin decision: a +/- 2 week visit window.",
    )
    half_life_min_points: int = Field(
        3,
        ge=3,
        description="Terminal half-life needs at least this many quantifiable points after Tmax (criteria.md §7: "
        "'log-linear regression on >= 3 terminal points after Cmax'; PKNCA min.hl.points = 3).",
    )
    half_life_r2_adj_tolerance: float = Field(
        1e-4,
        ge=0,
        description="Terminal phase choice: among the last n = min..all post-peak points, fits within this of "
        "the best adjusted R² count as equal and the one with most points wins (WinNonlin best-fit; PKNCA "
        "adj.r.squared.factor = 1e-4).",
    )
    half_life_min_r2_adj: float | None = Field(
        None,
        description="Half-life is null when the chosen fit's adjusted R² is below this (e.g. 0.9, PKNCA "
        "min.hl.r.squared). Unset = every fit with a decline is reported with its adjusted R².",
    )
    phase_assays: list[KineticAssay] = Field(
        ["car_t_copies", "car_t_cells", "car_t_percent"],
        description="Expansion phase (before / at / after the peak) is read from the first of these assays "
        "that has a quantifiable level for the patient; assays are never mixed.",
    )


SteroidRoute = Literal["iv", "po", "sc", "im", "intrathecal", "topical", "inhaled", "other"]


class SteroidConfig(_Section):
    """Corticosteroid exposure in methylprednisolone- and dexamethasone-equivalent mg (docs/dosing.md; criteria §6)."""

    dexamethasone_equivalent_mg: float = Field(
        0.75,
        gt=0,
        description="Dexamethasone dose equivalent to methylprednisolone 4 mg (criteria.md §6 [V2]: 0.75 mg, factor "
        "5.333 to MP). 0.6 (formularyproductions, potency ~30; factor 6.67) is the documented alternative.",
    )
    excluded_routes: list[SteroidRoute] = Field(
        ["intrathecal", "topical", "inhaled"],
        description="Steroid rows given by these routes are not systemic exposure and are left out (criteria.md "
        "§6: 'do not count intrathecal hydrocortisone, topical or inhaled steroids'). A row without a route "
        "counts as systemic.",
    )


HScoreClinicalInput = Literal["immunosuppression", "organomegaly", "hemophagocytosis"]


class ScoresConfig(_Section):
    """Baseline risk scores and HLH screens (docs/scores.md; criteria.md §3.4, §4; criteria/car_hematotox.yaml,
    easix.yaml, hscore.yaml, iec_hs.yaml)."""

    baseline_lookback_days: float = Field(
        14.0,
        gt=0,
        description="A baseline lab is the last value at or before lymphodepletion (else before infusion) and "
        "no more than this many days before it (Tocsin decision; CAR-HEMATOTOX uses the pre-lymphodepletion "
        "draw, e.g. day -5).",
    )
    hematotox_boundary_rule: Literal["developer_group", "independent_tracker"] = Field(
        "developer_group",
        description="CAR-HEMATOTOX at the exact cut-off values (criteria.md §3.4): developer_group (the "
        "Rejeski group's script: PLT 75 = 1 point, ANC 1.2 = 1 point) or independent_tracker (PLT 75 = 2, "
        "ANC 1.2 = 0).",
    )
    easix_cutoff: str | None = Field(
        None,
        description="Id of a published EASIX cut-off in criteria/easix.yaml (e.g. korell2022); unset = no "
        "risk group, only the value and log2 (no consensus cut-off, criteria.md §4.3).",
    )
    m_easix_cutoff: str | None = Field(
        None, description="Id of a published m-EASIX cut-off in criteria/easix.yaml; unset = none."
    )
    hscore_window_days: float = Field(
        7.0,
        gt=0,
        description="HScore at a time takes the worst value of each lab in this many days up to it (Tocsin "
        "decision after PMC7589537 Table 4, 'lowest within 7 d').",
    )
    hscore_assume_absent: list[HScoreClinicalInput] = Field(
        [],
        description="HScore inputs the event vocabulary cannot carry, scored 0 (absent) instead of missing; "
        "each output row then says so in its caveats. Empty = missing, and the score is not given.",
    )
    hlh_screen_window_days: float = Field(
        2.0,
        gt=0,
        description="IEC-HS and carHLH screens take the worst value of each lab in this many days up to the "
        "evaluation time (Tocsin decision: daily labs and every-other-day ferritin both count).",
    )
    ferritin_uln_ng_ml: float | None = Field(
        None,
        gt=0,
        description="Ferritin upper limit of normal for the IEC-HS 'ferritin > 2 x ULN' criterion (event rows "
        "cannot carry a ferritin uln). Unset = only '> 2 x the value at infusion' is checked, and a ferritin "
        "that is not above it leaves the criterion missing.",
    )


CensorItem = Literal["progression", "next_therapy"]


class IcahtConfig(_Section):
    """EHA/EBMT ICAHT (neutrophils) and T-ICAHT (platelets), early and late (docs/icaht.md; criteria.md §3.3;
    criteria/icaht_eha2023.yaml, t_icaht_2025.yaml). The count thresholds are data; these are the rules the
    consensus leaves to the implementer."""

    max_interpolation_gap_days: int = Field(
        7,
        ge=0,
        description="Days without a count are filled by linear interpolation when at most this many consecutive "
        "days are missing (Liang, automatedicahtgrading: na.approx maxgap = 7, for weekly outpatient draws); "
        "days in longer gaps are unknown and reported as not evaluable.",
    )
    stable_recovery_days: int = Field(
        3,
        ge=1,
        description="Neutrophil recovery is stable when ANC > 500/uL on this many consecutive days (CIBMTR "
        "engraftment, used by Liang); a shorter recovery between neutropenic days is bridged (counted as "
        "neutropenic). 1 = no bridging.",
    )
    duration_rule: Literal["longest", "cumulative"] = Field(
        "longest",
        description="Early ICAHT days below a threshold: the longest continuous stretch after bridging (Liang's "
        "code; criteria.md §3.3 decision) or the cumulative days in days 0-30. Both are output; this one grades.",
    )
    never_recovered_grade4: bool = Field(
        True,
        description="Grade 4 for neutropenia that starts by never_recovered_onset_max_day and does not recover "
        "through the last ANC of days 0-30 or death (Liang: early deaths and late follow-up gaps would "
        "otherwise be under-graded).",
    )
    never_recovered_onset_max_day: int = Field(
        3, ge=0, description="Latest day on which that never-recovering neutropenia may start (Liang: day 0-3)."
    )
    late_end_day: int = Field(
        100,
        ge=31,
        description="Last day of the late window (EHA/EBMT: day +31 to +100; Liang allows +180 or +365).",
    )
    late_min_values: int = Field(
        2,
        ge=1,
        description="Late ICAHT / T-ICAHT needs at least this many daily values in the late window (consensus: "
        ">= 2 measurements, not transient). 1 = Liang, who grades a single value when it is the only one.",
    )
    censor_at: list[CensorItem] = Field(
        ["progression", "next_therapy"],
        description="Events that end the observation for both windows (EHA/EBMT and T-ICAHT: censor at "
        "progression and next therapy). Last contact and death always end it.",
    )
    t_stable_recovery_days: int = Field(
        3,
        ge=1,
        description="T-ICAHT: platelet recovery needs this many consecutive days >= 20 x10^9/L; a shorter "
        "(non-stable) recovery is added to the days below (T-ICAHT table footnote; the T-ICAHT code bridges up "
        "to 6 days, i.e. 7).",
    )
    t_duration_rule: Literal["longest", "cumulative"] = Field(
        "cumulative",
        description="T-ICAHT days below a threshold: cumulative (T-ICAHT table) or the longest stretch.",
    )
    t_transfusion_free_days: int = Field(
        7,
        ge=0,
        description="A platelet count on the day of a platelet transfusion or up to this many days after it is "
        "not the patient's own and counts as below every T-ICAHT threshold (recovery needs 7 transfusion-free "
        "days, T-ICAHT 2025). 0 = only the transfusion day.",
    )


class ProlongedCytopeniaConfig(_Section):
    """Prolonged hematologic toxicity (PHT) at day 28, recovery and biphasic cytopenia (docs/icaht.md;
    criteria/pht_wang2023.yaml; seed 003, Wang 2023, doi:10.3389/fimmu.2023.1139559)."""

    landmark_day: int = Field(28, ge=0, description="PHT = cytopenia of any lineage at this day (Wang 2023: 'on D28').")
    landmark_window_days: int = Field(
        3,
        ge=0,
        description="The landmark value of a lineage is the daily lowest value of the day nearest to the "
        "landmark within +/- this many days (ties: the lower value). Tocsin decision for twice-weekly draws.",
    )
    min_grade: int = Field(
        1,
        ge=1,
        le=4,
        description="CTCAE v5 grade at the landmark that counts as cytopenia (Wang 2023 counts any grade, "
        "ASCO/CTCAE table; 3 = 'grade >= 3 cytopenia at day 28').",
    )
    anc_lln: float = Field(
        1.8,
        gt=0,
        description="ANC lower limit of normal (10^9/L) for CTCAE grade 1 and complete recovery when the row "
        "carries no lln (typical adult reference; the laboratory's own lln comes first).",
    )
    plt_lln: float = Field(150.0, gt=0, description="Platelet lower limit of normal (10^9/L) when the row has none.")
    hgb_lln: float = Field(
        12.0,
        gt=0,
        description="Hemoglobin lower limit of normal (g/dL) when the row has none (WHO anemia threshold for "
        "non-pregnant women; 13.0 for men).",
    )
    recovery: Literal["threshold", "grade_le_2", "normal"] = Field(
        "grade_le_2",
        description="Recovery that sets recovered and opens the watch for a second fall: threshold (ANC >= 0.5 "
        "on 3 measurements, CIBMTR; platelets >= 20 untransfused for 7 days, T-ICAHT; none for hemoglobin), "
        "grade_le_2 (Wang 2023: back to grade <= 2 without transfusion or G-CSF) or normal (Wang 2023 complete "
        "recovery: at or above the LLN). All three recovery days are output.",
    )
    support_free_days: int = Field(
        7,
        ge=0,
        description="Wang recovery (grade_le_2, normal): no support item of the lineage (G-CSF/GM-CSF; platelet "
        "transfusion/TPO-RA; red cells/EPO) on the day of the value or this many days before (Tocsin decision; "
        "Wang gives no interval, 7 days as the platelet definition).",
    )
    recovery_consecutive_values: int = Field(
        1,
        ge=1,
        description="Wang recovery needs this many consecutive daily values that meet it (Wang 2023: one).",
    )
    second_fall_min_grade: int = Field(
        3,
        ge=1,
        le=4,
        description="After a recovery, a value of at least this CTCAE v5 grade is a second fall (biphasic or "
        "recurrent cytopenia; Wang's recurrences fell below grade 3 levels).",
    )
    censor_at: list[CensorItem] = Field(
        ["progression", "next_therapy"],
        description="Values after these events are not used (cytopenia then has another cause). Last contact "
        "and death always end the observation.",
    )


CytopeniaLineage = Literal["anc", "plt", "hgb", "alc", "wbc"]


class CytopeniaConfig(_Section):
    """CTCAE cytopenia grading of single lab values (docs/cytopenia.md; criteria.md §3.1)."""

    scale: Literal["ctcae5", "ctcae6"] = Field(
        "ctcae5",
        description="CTCAE version: ctcae5 (v5.0, 2017; ASCO 2021 grades CAR-T cytopenias with it, criteria.md "
        "§3.2) or ctcae6 (v6.0, 2025: new neutrophil bands, thrombocytopenia grade 4 < 10 x 10^9/L). Every "
        "graded value names the version it was graded under.",
    )
    lln_reference: dict[CytopeniaLineage, float] = Field(
        {},
        description="Lower limits of normal used when a lab row carries no lln, in canonical units (counts "
        "10*9/L, hgb g/dL), e.g. {hgb = 12.0}. CTCAE grade 1 starts at the LLN of the reporting laboratory; "
        "empty = unknown, and a value above the grade-2 cut-off is then 'cannot grade: needs lln'.",
    )
    lln_reference_by_sex: dict[Literal["female", "male"], dict[CytopeniaLineage, float]] = Field(
        {},
        description="Sex-specific lower limits of normal (e.g. {male = {hgb = 13.5}}), used before "
        "lln_reference for patients whose sex is recorded; the row's own lln always comes first.",
    )
    transfusion_hours_before: float = Field(
        24.0,
        ge=0,
        description="A transfusion up to this long before a value marks it 'transfused' (the value is "
        "post-transfusion, not the patient's own). rbc_transfusion for hgb, platelet_transfusion for plt.",
    )
    transfusion_hours_after: float = Field(
        24.0,
        ge=0,
        description="A transfusion up to this long after a value marks it 'transfused' (the transfusion the "
        "value indicated).",
    )
    transfusion_raises_grade: bool = Field(
        True,
        description="A transfused value is graded 3 where CTCAE grade 3 reads 'transfusion indicated' (anemia; "
        "v6.0 thrombocytopenia) even above the numeric cut-off (criteria.md §3.1 note: judgement). false = "
        "grade the number only and keep 'transfused' as information.",
    )
    ctcae6_lymphocytes: Literal["not_graded", "ctcae5"] = Field(
        "not_graded",
        description="CTCAE v6.0 has no lab-graded 'Lymphocyte count decreased' (admiral ncictcaev6.json; "
        "criteria.md §3.1 [V1]). not_graded: ALC values get no grade; ctcae5: graded by the v5.0 table, and "
        "the row's scale and rule say so.",
    )


class SituationConfig(_Section):
    """Situation facts for decision support: response to tocilizumab, possible infection, prolonged cytopenia,
    prophylaxis (docs/situation.md; criteria.md §5; seeds 000, 001, 003)."""

    tocilizumab_response_hours: float = Field(
        8.0,
        gt=0,
        description="The CRS grade is compared with the grade at the last tocilizumab dose once this long after it "
        "(seed 001 and NCCN: repeat if no improvement 8 h after the dose).",
    )
    refractory_doses: int = Field(
        2, ge=1, description="crs_grade_not_falling_after_n_doses looks at the grade after this many tocilizumab doses."
    )
    il6_pre_dose_hours: float = Field(
        48.0, gt=0, description="The pre-dose IL-6 is the last value at most this long before the tocilizumab dose."
    )
    pct_threshold_ng_ml: float = Field(
        0.5,
        gt=0,
        description="Procalcitonin above this (ng/mL) suggests bacterial infection (seed 000: reference < 0.5 ng/mL).",
    )
    lab_lookback_days: float = Field(
        3.0, gt=0, description="A lab value (PCT, ANC, IgG excepted) describes 'now' for this many days after it."
    )
    positive_result_days: float = Field(
        14.0,
        gt=0,
        description="A positive culture, PCR or mNGS result counts for this many days (Tocsin decision: an "
        "infection is treated for about two weeks).",
    )
    fever_lookback_hours: float = Field(24.0, gt=0, description="A fever counts for this long after it was measured.")
    neutropenic_fever_celsius: float = Field(
        38.0, description="Neutropenic fever: temperature >= this with ANC below neutropenia_anc (ASCO 2021)."
    )
    neutropenia_anc: float = Field(0.5, gt=0, description="Neutropenia: ANC below this (10^9/L).")
    viral_targets: list[str] = Field(
        ["CMV", "EBV", "HHV6", "ADV", "VZV"],
        description="PCR targets whose positive result is viral reactivation (seed 000: CMV, VZV; criteria.md §5.5).",
    )
    high_dose_steroid_dex_mg_per_day: float = Field(
        10.0,
        gt=0,
        description="A day with at least this dexamethasone-equivalent dose is a high-dose steroid day (Tocsin "
        "decision: the smallest CRS/ICANS dexamethasone dose of ASCO/NCCN).",
    )
    high_dose_steroid_days: int = Field(
        3, ge=0, description="Mould-active cover when high-dose steroid days exceed this (criteria.md §5.4: > 3 d)."
    )
    high_dose_steroid_window_days: float = Field(
        14.0, gt=0, description="High-dose steroid days are counted within this many days up to the query."
    )
    prolonged_neutropenia_days: float = Field(
        14.0,
        gt=0,
        description="Mould-active cover when ANC has stayed below neutropenia_anc longer than this (criteria.md "
        "§5.4: 14-28 d, institutional).",
    )
    cytopenia_lookback_days: float = Field(
        7.0, gt=0, description="The latest blood count at most this old tells whether a PHT lineage is still cytopenic."
    )
    prednisone_mg_per_kg: float = Field(
        0.5, gt=0, description="Low-dose prednisone for PHT, mg/kg/day (seed 003, Wang 2023)."
    )
    prednisone_course_gap_days: float = Field(
        2.0,
        gt=0,
        description="Prednisone is 'stopped' when the last dose is older than this; a dose after such a gap starts a "
        "new course.",
    )
    ivig_igg_below_mg_dl: float = Field(
        400.0, gt=0, description="IVIG reminder when IgG is below this (mg/dL; criteria.md §5.4)."
    )
    ivig_requires_infection: bool = Field(
        True,
        description="IVIG reminder only with a positive culture/PCR/mNGS result in the window (adult practice); "
        "false = replace on IgG alone (pediatric B-ALL practice, criteria.md §5.4).",
    )


class CohortConfig(_Section):
    """Choices of ``tocsin cohort derive`` (one row per patient; docs/cohort.md, docs/cohort_columns.md)."""

    response_day: float = Field(
        28.0, description="Landmark of response_day28: the response assessment nearest this day (day 0 = infusion)."
    )
    response_window_days: float = Field(
        7.0,
        ge=0,
        description="Only assessments within this many days of response_day count; ties: the earlier one (Tocsin "
        "decision: the earlier assessment is less often after a next therapy).",
    )
    kinetics_assays: list[KineticAssay] = Field(
        ["car_t_copies", "car_t_cells", "car_t_percent"],
        min_length=1,
        description="Assay whose Cmax, Tmax and AUC0-28 fill the kinetics columns: the first of these a patient has "
        "(assays are never mixed).",
    )
    infection_until_day: float | None = Field(
        None,
        gt=0,
        description="Count infections from day 0 up to this day; null = the whole follow-up.",
    )


class GradingConfig(_Section):
    """All parameters of one grading run."""

    name: str = "default"
    crs: CrsConfig = CrsConfig()
    icans: IcansConfig = IcansConfig()
    episodes: EpisodeConfig = EpisodeConfig()
    cytopenia: CytopeniaConfig = CytopeniaConfig()
    kinetics: KineticsConfig = KineticsConfig()
    steroids: SteroidConfig = SteroidConfig()
    scores: ScoresConfig = ScoresConfig()
    icaht: IcahtConfig = IcahtConfig()
    prolonged_cytopenia: ProlongedCytopeniaConfig = ProlongedCytopeniaConfig()
    situation: SituationConfig = SituationConfig()
    cohort: CohortConfig = CohortConfig()
    earliest_day: float = Field(
        -30.0,
        description="Rows before this day (relative to infusion) are "
        "rejected as implausible (lymphodepletion is days -5 to -2).",
    )

    def fingerprint(self) -> str:
        """Short hash of every value: two runs with equal fingerprints used identical parameters."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:12]

    def describe(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint(), **self.model_dump(mode="json")}


def annotated_toml(config: GradingConfig) -> str:
    """The configuration as a TOML file a centre can copy and edit, each value with its description."""
    lines = [
        f"# Tocsin grading configuration (fingerprint {config.fingerprint()}).",
        "# Copy, change what your centre decides differently, and pass it with --config.",
        "",
    ]

    def value(v: object) -> str:
        if v is None:
            return "# (none)"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)  # a TOML basic string has JSON's escapes
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(item) for item in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {value(item)}" for k, item in v.items()) + "}"
        return str(v)

    def emit(model: BaseModel) -> None:
        for name, field in type(model).model_fields.items():
            current = getattr(model, name)
            if isinstance(current, BaseModel):
                continue
            if field.description:
                lines.append("# " + " ".join(field.description.split()))
            lines.append(f"{'# ' if current is None else ''}{name} = {value(current)}")

    emit(config)
    for name, field in type(config).model_fields.items():
        section = getattr(config, name)
        if isinstance(section, BaseModel):
            lines += ["", f"[{name}]"]
            emit(section)
    return "\n".join(lines) + "\n"
