"""Deterministic synthetic CAR-T cohorts with ground-truth CRS, ICANS, hematotoxicity, kinetics and outcome labels.

``generate_cohort(n, seed)`` returns long-format events (the input every Tocsin adapter produces, see
``DESIGN.md``) and one label row per patient: the ASTCT 2019 CRS and ICANS grades that the generator
*planned* and then wrote into the events so that a correct ASTCT grader must derive exactly those
labels. The generator is pure (no I/O, no clock, no globals that change); :func:`write_cohort` is the
small writer around it. Same ``(n_patients, seed, days)`` gives byte-identical frames; each patient has
its own random stream seeded by ``(seed, patient index)``, so patient ``SYN00042`` is the same course in
a cohort of 100 and in one of 10,000 drawn with the same seed and ``days``.

Generative model (one patient)
------------------------------
* **Baseline.** ~10 % children aged 3-11 y (tisagenlecleucel for B-ALL, weight by age); adults 18-84 y
  with a product mix of axi-cel, tisa-cel, liso-cel, brexu-cel (large B-cell lymphoma, FL, MCL, B-ALL)
  and cilta-cel, ide-cel (myeloma). Rows at day 0: ``infusion`` (value = product), ``age``,
  ``weight``, ``sex``, ``disease``. Day 0 is the infusion; ``day`` counts days since it.
* **Monitoring.** One vital-sign set (temperature, SBP, DBP, MAP, heart rate, respiratory rate, SpO2)
  every 2, 3 or 4 h (chosen per patient), hourly from CRS onset until 12 h after its resolution.
  CRP, IL-6 and ferritin every morning. A neuro assessment every 8 or 12 h: ICE (age >= 12) or CAPD
  (age < 12) plus the level of consciousness.
* **CRS.** Occurs in ~80 % of patients, more often and more severe with axi-cel and brexu-cel, less
  with liso-cel and the BCMA products. Onset on day 1-7 (earliest with axi-cel, brexu-cel and ide-cel,
  latest with cilta-cel), always with a fever >= 38.2 °C at a scheduled vital check. The planned ASTCT
  maximum grade is reached by two "support tracks" that rise and fall like a staircase:
  blood pressure (hypotension SBP < 90 mmHg treated with fluids -> one vasopressor, norepinephrine,
  sometimes with vasopressin -> a second vasopressor that is not vasopressin) and oxygen (nasal cannula
  1-6 L/min -> high-flow nasal cannula > 6 L/min or a face mask -> BiPAP or mechanical ventilation).
  Grade 1 = fever only. Grade 2 = nasal cannula and/or hypotension without vasopressors (hypotension
  only in patients >= 10 y; children under 10 reach grade 2 by oxygen). Grade 3 = one vasopressor or
  HFNC/face mask. Grade 4 = two non-vasopressin vasopressors or positive pressure. Paracetamol is
  given at the fever and every 6-8 h while it lasts; tocilizumab (8 mg/kg, 12 mg/kg under 30 kg,
  at most 800 mg) 0.5-3 h after grade 2 is reached, repeated >= 8 h later in some; dexamethasone
  10 mg q6h from grade 3. After tocilizumab the fever usually (85 %) settles within 6-24 h while the
  support may continue; otherwise a second dose follows. Episodes last about 1-8 days (longer with
  grade). ~12 % of CRS patients have a second, milder episode that starts >= 60 h after the first
  resolved (no fever, antipyretic, oxygen or vasopressor in between).
* **ICANS.** ~30 % overall (more with CRS grade and with axi-cel/brexu-cel), mostly 0.5-5 days after
  CRS onset (days 3-10); a staircase of ICANS levels with ICE 7-9 / 3-6 / 0-2 (or CAPD 1-8 / >= 9),
  depressed consciousness, and for the severest a rapidly resolving seizure or cerebral oedema.
  Dexamethasone 10 mg q6h while ICANS is grade >= 2.

* **Hematology and CAR-T kinetics** (vectorised per chunk in ``_hematology``, drawn from the end of each
  patient's stream so the CRS/ICANS course is unchanged): a baseline panel at day -6 or -5, 06:00-07:30
  (ANC, platelets, Hb, CRP, ferritin, LDH, creatinine; ~45 % with a reduced marrow reserve or more
  inflammation, giving ~35 % CAR-HEMATOTOX >= 2), then ``lymphodepletion`` (Flu/Cy) on day -5 at
  09:00-12:00. Daily WBC, ANC, ALC, platelets and Hb every morning from day 0. The neutrophil course is
  planned as an early ICAHT class (0-4; weights by CAR-HEMATOTOX risk, more severe after CRS grade >= 3):
  fall after lymphodepletion, a stretch <= 500/uL starting on day 1-10 (1-6, 7-13, 14-24 days; some with
  days <= 100/uL, some aplastic and never recovering), the lowest count on the nadir day 3-10, recovery to
  a plateau; ~25 % of long stretches have a 1-2-day non-stable recovery, ~18 % a second dip <= 500/uL from
  day 13 after a stable recovery (biphasic). G-CSF (5 ug/kg or 300/480 ug) when still neutropenic on day
  14-16 (~65 %) or prophylactically from day 2 in ~30 % of high-risk patients; platelet transfusions
  below 10 (or 20) x 10^9/L, red cells below Hb 7.5-8 g/dL (with the rise that follows). CAR-T copies per
  ug genomic DNA on days 1, 4, 7, 10, 14, 21, 28 (08:00-10:00): lognormal peak (median by product) at the
  day 7, 10 or 14 sample, exponential expansion before and bi-exponential decline after; below 5
  copies/ug written ``<5``; ~2 % never expand.
* **Disease course and outcome** (vectorised per chunk in ``_outcomes``, drawn after the hematology, last in each
  patient's stream, so everything above is unchanged). Everyone is alive through the monitored course: progression,
  next therapy, death and last contact come on days after the follow-up start (day 30, or the end of a longer
  course), so they never cut it short. A best response per disease and product (table below), then ``response``
  assessments on day 26-30 and on days 90, 180, 365, 545 and 730 (+/- 7 days), 09:00-16:00, until progression, death
  or the data cut. Lymphoma and myeloma responses are CR, PR (myeloma: VGPR or PR), SD, PD; complete responders who
  deepen later are PR on day 28 (25-40 % in lymphoma, 70-80 % in myeloma). B-ALL remissions are MRD_negative_CR
  (85 %), CRi (10 %) or MRD_positive_CR (5 %); non-response is NR, followed 1-21 days after the follow-up start by a
  ``progression`` row (treatment failure, coded as docs/cohort.md advises). Primary refractory disease is the day-28
  PD itself (no separate row). After CR, PR or SD a share progresses (``progression``, value PET-CT, bone marrow or
  M-protein) at the follow-up start + a lognormal time (median by response, sigma 0.7); a high CAR-HEMATOTOX raises
  the progression-free probability to the power 1.3, a modest effect in the direction of Rejeski 2021 (shorter PFS
  and OS with a high score). Non-relapse death: 5 %, x 2.5 after early ICAHT grade >= 3, x 1.5 after CRS or ICANS
  grade >= 3, x 1.3 with a high CAR-HEMATOTOX, a day after the follow-up start + an exponential time (mean 120 days,
  60 after ICAHT >= 3), cause infection (60 %; 80 % after ICAHT >= 3) or other, when it comes before progression.
  After progression: ``next_therapy`` in 70 %, 5-35 days later (bispecific antibody, radiotherapy, chemotherapy or
  allogeneic HCT, by disease), and death from progression 7 days + a lognormal survival later (median by disease,
  sigma 0.8). Staggered entry: the data cut falls 152-700 days (uniform) after the follow-up start, 6-24 months
  after infusion; a patient alive then has a ``last_contact`` ("alive") that day, and nothing is written after the
  cut or a death.
  There are no deaths from CRS or ICANS: every episode resolves within the course, and ``death = crs`` (``icans``) is
  grade 5 whenever it comes, so such a death would contradict both the course and its labels.
* **CAR-T dose** (vectorised per chunk in ``_cell_dose``, drawn after the outcome, last in each patient's stream, so
  every row and label above is unchanged): one row at minute 0 of day 0, per kg (``car_t_dose_per_kg``, 10*6/kg, 2
  decimals) or total (``car_t_dose_total``, 10*6 with 1 decimal, or 10*8 with 2 for adult tisa-cel) as the
  product's label doses it (table ``_DOSES``: median x exp(sigma x N(0, 1)) clipped to the label range, a per-kg
  dose lowered to a flat maximum for heavy patients). Label ``car_t_dose_per_kg``: the per-kg value written, or the
  total in 10^6 divided by the written weight, rounded to 6 decimals (``tocsin cohort derive``'s rule).
* **Mixed units, on purpose** (each per patient): temperature in ``[degF]`` (~30 %), CRP in ``mg/dL``
  (~30 %), norepinephrine in ``ug/kg/min`` (~40 %; the ``weight`` row is always present), FiO2 as a
  fraction with unit ``"1"`` (~40 %); counts per uL (ANC, ALC in ``/uL``, WBC and platelets in
  ``10*3/uL``; ~25 %), Hb in ``g/L`` (~25 %), creatinine in ``umol/L`` (~25 %), G-CSF per kg, adult tisa-cel
  doses in ``10*8``.

Hematology and kinetics labels
------------------------------
Computed from the values written (not from the plan), under the engine's default rules:
``car_hematotox`` = Rejeski 2021 points of the baseline panel (developer-group boundaries; no value sits
on PLT 75 or ANC 1.2, where the implementations disagree, so both boundary rules give it).
``icaht_early_grade``, ``days_anc_le_500``, ``days_anc_le_100``: the daily ANC of days 0-30 (the last
count carried to day 30, as the grader's 7-day edge rule does; null with less than 24 days of follow-up),
recoveries of 1-2 days between neutropenic days bridged (stable recovery 3 days), longest stretch,
EHA/EBMT bands (<= 500/uL 1-6 / 7-13 / 14-30 / >= 31 days; <= 100/uL >= 7 / >= 14 days) and grade 4 for a
stretch <= 500/uL that holds on day 30 and began by day 3. ``pht``, ``pht_lineage_count``: lineages
below the default LLN on day 28 (ANC < 1.8 x 10^9/L, platelets < 150 x 10^9/L, Hb < 12.0 g/dL: CTCAE
grade >= 1; null without a value on days 25-31). ``car_t_cmax``, ``car_t_tmax_day``: the highest
quantifiable level and the day of its first sample (null when none is quantifiable).

Outcome labels
--------------
The definitions of ``tocsin cohort derive`` (docs/cohort.md), from the rows written: ``response_day28`` = the
value of the one assessment within day 28 +/- 7; ``os_days``, ``os_event`` = death (1), else the last contact
(0); ``pfs_days``, ``pfs_event`` = the first progression (a ``progression`` row or a response PD) or death (1),
else the last contact (0); ``relapse_nrm_days``, ``relapse_nrm_status`` = progression (1; a death from
progression always follows one), death without progression (2) or censored (0), so the days equal
``pfs_days``.

Why the labels are unambiguous
------------------------------
Every escalation of support is either charted at the same minute as a temperature >= 38.2 °C (the
episode's fever lasts at least until after it) or follows tocilizumab in the same episode, so any
reading of the ASTCT fever waiver (anticytokine only, or also antipyretics) gives the same grade.
Outside planned episodes there is no temperature >= 38 °C (at most 37.6 °C), no SBP < 90 mmHg or
MAP < 65 mmHg, no oxygen, no vasopressor and SpO2 >= 94 % on room air; in grade 1 episodes the same
holds apart from the fever. A face mask runs at > 6 L/min, so grading by device or by flow agrees.
Hypoxia is documented by one SpO2 of 88-91 % on room air in the hour before oxygen starts.
Temperatures are >= 38.2 °C or <= 37.6 °C, so rounding to 0.1 °F cannot move a value across 38.0 °C.
Within an episode no 24 h pass without fever, antipyretic, oxygen or a vasopressor; two episodes are
at least 60 h apart, so any resolution rule of 24-48 quiet hours counts the same episodes.
ICANS labels are the maximum ASTCT grade of the assessments actually written (ICE 10 = normal;
ICE 7-9 = 1, 3-6 = 2, 0-2 = 3; CAPD 1-8 = 1, >= 9 = 3; consciousness awakens spontaneously = 1, to
voice = 2, to touch = 3, unarousable = 4 with ICE 0 or no CAPD; seizure and cerebral oedema only
after an assessment of the same grade); ICE 0 is only written with a depressed consciousness.

Grade distribution and sources
------------------------------
The targets, of all patients: no CRS ~20 %, grade 1 ~36 %, grade 2 ~28 %, grade 3 ~10 %, grade 4 ~5 %;
ICANS ~30 %. They are a deliberate blend, not a reproduction, of the pivotal CD19 trials, which used
older scales: ZUMA-1 (axi-cel; Neelapu SS et al., N Engl J Med 2017;377:2531-2544,
doi:10.1056/NEJMoa1707447): CRS 93 %, grade >= 3 13 % (Lee 2014), median onset day 2; neurological
events 64 %, grade >= 3 28 %. JULIET (tisa-cel; Schuster SJ et al., N Engl J Med 2019;380:45-56,
doi:10.1056/NEJMoa1804980): CRS 58 %, grade >= 3 22 % (Penn scale), median onset day 3; neurological
events 21 %, grade >= 3 12 %. The grades themselves follow ASTCT 2019 (Lee DW et al., Biol Blood Marrow
Transplant 2019;25:625-638, doi:10.1016/j.bbmt.2018.12.758). The cohort is for testing and benchmarking
software, not for clinical inference.

Hematology targets (1,000 patients, seed 3): early ICAHT grade 0 ~14 %, 1 ~40 %, 2 ~29 %, 3 ~12 %, 4 ~5 %
(a blend in the spirit of Rejeski K et al., Blood 2023;142:865-877, doi:10.1182/blood.2023020578: most
patients grade 0-1, ~10-20 % grade 3-4); CAR-HEMATOTOX high ~35 % (Rejeski K et al., Blood
2021;138:2499-2513, doi:10.1182/blood.2020010543); PHT by the CTCAE grade >= 1 definition of Wang 2023
(doi:10.3389/fimmu.2023.1139559) ~75 %, mostly anemia and thrombocytopenia; CAR-T peak on day 7 (~45 %),
10 (~30 %) or 14 (~25 %).

Outcome targets: best response CR/PR/SD/PD (B-ALL CR/NR) and measured 12-month PFS and OS (Kaplan-Meier; 4,000
patients, seed 3), set to approximate figures of the pivotal trials:

===============  ==============  =========  ========  ================================================
group            best response   PFS 12 mo  OS 12 mo  trial (approximate published figures)
===============  ==============  =========  ========  ================================================
LBCL axi-cel     58/24/8/10      42 %       57 %      ZUMA-1: ORR 82 %, CR 54 % (58 % later)
LBCL tisa-cel    40/12/16/32     28 %       40 %      JULIET: ORR 52 %, CR 40 %
LBCL liso-cel    53/20/10/17     39 %       55 %      TRANSCEND: ORR 73 %, CR 53 %
FL               75/17/5/3       77 %       93 %      by analogy: high CR, few relapses
MCL brexu-cel    67/26/3/4       52 %       71 %      ZUMA-2: ORR 93 %, CR 67 %
B-ALL tisa-cel   82/18           48 %       68 %      ELIANA: CR/CRi 81 %; EFS 50 %, OS 76 % at 12 mo
B-ALL brexu-cel  71/29           44 %       61 %      ZUMA-3: CR/CRi 71 %
MM ide-cel       33/40/17/10     35 %       79 %      KarMMa: ORR 73 %, >= CR 33 %, median PFS 8.8 mo
MM cilta-cel     67/30/2/1       74 %       91 %      CARTITUDE-1: ORR 97 %, sCR 67 %, PFS 77 % at 12 mo
===============  ==============  =========  ========  ================================================

Non-relapse mortality ~6 % (4 % without and 15 % after early ICAHT grade >= 3); 12-month PFS 42 % with a high
CAR-HEMATOTOX, 50 % without. Trials: ZUMA-1 above; JULIET above; TRANSCEND NHL 001 (liso-cel; Abramson JS et
al., Lancet 2020;396:839-852, doi:10.1016/S0140-6736(20)31366-0); ZUMA-2 (brexu-cel, MCL; Wang M et al.,
N Engl J Med 2020;382:1331-1342, doi:10.1056/NEJMoa1914347); ELIANA (tisa-cel, B-ALL; Maude SL et al., N Engl J
Med 2018;378:439-448, doi:10.1056/NEJMoa1709866); ZUMA-3 (brexu-cel, adult B-ALL; Shah BD et al., Lancet
2021;398:491-502, doi:10.1016/S0140-6736(21)01222-8); KarMMa (ide-cel; Munshi NC et al., N Engl J Med
2021;384:705-716, doi:10.1056/NEJMoa2024850); CARTITUDE-1 (cilta-cel; Berdeja JG et al., Lancet
2021;398:314-324, doi:10.1016/S0140-6736(21)00933-8).

Example
-------
>>> cohort = generate_cohort(3, seed=1)
>>> cohort.events.columns
['patient_id', 'day', 'item', 'value', 'unit', 'source']
>>> cohort.labels["patient_id"].to_list()
['SYN00001', 'SYN00002', 'SYN00003']
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

__all__ = [
    "PRODUCTS",
    "SyntheticCohort",
    "generate_cohort",
    "write_cohort",
    "EVENT_SCHEMA",
    "LABEL_SCHEMA",
    "OUTCOME_LABELS",
]

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.String(),
    "day": pl.Float64(),
    "item": pl.String(),
    "value": pl.String(),
    "unit": pl.String(),
    "source": pl.String(),
}
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.String(),
    "crs_max_grade": pl.Int8(),
    "crs_onset_day": pl.Float64(),
    "crs_episodes": pl.Int8(),
    "icans_max_grade": pl.Int8(),
    "icans_onset_day": pl.Float64(),
    "age": pl.Float64(),
    "product": pl.String(),
    "car_hematotox": pl.Int8(),
    "icaht_early_grade": pl.Int8(),
    "days_anc_le_500": pl.Int16(),
    "days_anc_le_100": pl.Int16(),
    "pht": pl.Boolean(),
    "pht_lineage_count": pl.Int8(),
    "car_t_cmax": pl.Float64(),
    "car_t_tmax_day": pl.Float64(),
    "response_day28": pl.String(),
    "os_days": pl.Float64(),
    "os_event": pl.Int8(),
    "pfs_days": pl.Float64(),
    "pfs_event": pl.Int8(),
    "relapse_nrm_days": pl.Float64(),
    "relapse_nrm_status": pl.Int8(),
    "car_t_dose_per_kg": pl.Float64(),
}
SOURCE = "synth"
_CHUNK = 256  # patients simulated and assembled together
MIN_DAYS = 14
_STREAM = 0x7A5C  # separates this generator's random streams from any other use of the same seed

PRODUCTS = ("axi-cel", "tisa-cel", "liso-cel", "brexu-cel", "cilta-cel", "ide-cel")

# Items in tie-break order: rows of one patient at the same minute are written in this order.
_ITEMS = (
    "infusion",
    "age",
    "weight",
    "sex",
    "disease",
    "temperature",
    "sbp",
    "dbp",
    "map",
    "heart_rate",
    "resp_rate",
    "spo2",
    "oxygen",
    "oxygen_flow",
    "fio2",
    "norepinephrine",
    "epinephrine",
    "phenylephrine",
    "dopamine",
    "vasopressin",
    "fluid_bolus",
    "ice_score",
    "capd_score",
    "consciousness",
    "seizure",
    "cerebral_edema",
    "tocilizumab",
    "dexamethasone",
    "antipyretic",
    "crp",
    "il6",
    "ferritin",
    # hematology and kinetics (appended: the codes above stay as they were)
    "lymphodepletion",
    "wbc",
    "anc",
    "alc",
    "plt",
    "hgb",
    "ldh",
    "creatinine",
    "g_csf",
    "platelet_transfusion",
    "rbc_transfusion",
    "car_t_copies",
    # disease course and outcome (appended: the codes above stay as they were)
    "response",
    "progression",
    "next_therapy",
    "last_contact",
    "death",
    # the infused CAR-T dose (appended: the codes above stay as they were)
    "car_t_dose_per_kg",
    "car_t_dose_total",
)
_I = {name: i for i, name in enumerate(_ITEMS)}
_UNITS = (
    "",
    "a",
    "kg",
    "Cel",
    "[degF]",
    "mm[Hg]",
    "/min",
    "%",
    "L/min",
    "1",
    "ug/min",
    "ug/kg/min",
    "U/min",
    "mL",
    "{score}",
    "mg",
    "mg/L",
    "mg/dL",
    "pg/mL",
    "ng/mL",
    "10*9/L",
    "10*3/uL",
    "/uL",
    "g/dL",
    "g/L",
    "U/L",
    "umol/L",
    "ug",
    "ug/kg",
    "{unit}",
    "{copies}/ug",
    "10*6/kg",
    "10*6",
    "10*8",
)
_U = {name: i for i, name in enumerate(_UNITS)}
_DISEASES = ("DLBCL", "HGBL", "PMBCL", "FL", "MCL", "B-ALL", "MM")
_RESPONSES = ("CR", "PR", "SD", "PD", "MRD_negative_CR", "CRi", "MRD_positive_CR", "NR")
_PROGRESSION_METHODS = ("PET-CT", "bone marrow", "M-protein")  # how progression is documented, by disease family
_NEXT_THERAPIES = ("bispecific antibody", "radiotherapy", "chemotherapy", "allogeneic HCT")
_DEATH_CAUSES = ("progression", "infection", "other")
_O2_DEVICES = ("room_air", "nasal_cannula", "high_flow_nasal_cannula", "face_mask", "bipap", "mechanical_ventilation")
_CONSCIOUSNESS = ("awake", "awakens_spontaneously", "awakens_to_voice", "awakens_to_touch", "unarousable")
_TEXTS = (
    *PRODUCTS,
    "female",
    "male",
    *_DISEASES,
    *_O2_DEVICES,
    *_CONSCIOUSNESS,
    "paracetamol",
    "rapidly_resolving",
    "focal",
    "diffuse",
    "Flu/Cy",
    "<5",
    *_RESPONSES,
    *_PROGRESSION_METHODS,
    *_NEXT_THERAPIES,
    *_DEATH_CAUSES,
    "alive",
)
_T = {name: i for i, name in enumerate(_TEXTS)}
_CONS0 = _T["awake"]  # consciousness codes are contiguous: _CONS0 + ASTCT consciousness grade

_VITAL_ITEMS = np.array(
    [_I[x] for x in ("temperature", "sbp", "dbp", "map", "heart_rate", "resp_rate", "spo2")], dtype=np.int16
)
_VITAL_UNITS = np.array([_U[x] for x in ("Cel", "mm[Hg]", "mm[Hg]", "mm[Hg]", "/min", "/min", "%")], dtype=np.int8)
_LAB_ITEMS = np.array([_I["crp"], _I["il6"], _I["ferritin"]], dtype=np.int16)

# Per product: adult share, P(CRS), onset-day weights (days 1..7), severity and ICANS multipliers.
_PRODUCT_PARAMS: dict[str, dict] = {
    "axi-cel": dict(share=0.32, p_crs=0.90, onset=(35, 35, 18, 8, 4, 0, 0), severe=1.35, icans=1.45),
    "tisa-cel": dict(share=0.14, p_crs=0.66, onset=(15, 25, 25, 15, 10, 5, 5), severe=1.0, icans=0.6),
    "liso-cel": dict(share=0.14, p_crs=0.52, onset=(0, 10, 20, 25, 20, 15, 10), severe=0.55, icans=0.9),
    "brexu-cel": dict(share=0.12, p_crs=0.88, onset=(30, 35, 20, 10, 5, 0, 0), severe=1.35, icans=1.45),
    "cilta-cel": dict(share=0.14, p_crs=0.89, onset=(0, 0, 0, 15, 25, 30, 30), severe=0.5, icans=0.55),
    "ide-cel": dict(share=0.14, p_crs=0.82, onset=(40, 35, 20, 5, 0, 0, 0), severe=0.6, icans=0.55),
}
_CHILD = dict(p_crs=0.75, onset=(20, 30, 25, 15, 10, 0, 0), severe=1.2, icans=0.8)
P_CHILD = 0.10
_GRADE_GIVEN_CRS = (0.455, 0.36, 0.125, 0.06)  # grades 1-4 before the product's severity tilt
_P_SECOND_EPISODE = 0.12
_MAX_EPISODES = 2
_P_ICANS_BY_CRS = (0.07, 0.2, 0.38, 0.62, 0.75)  # by planned CRS grade 0-4, before the product tilt


@dataclass(frozen=True)
class SyntheticCohort:
    """A synthetic cohort: long-format ``events`` and one ``labels`` row per patient.

    ``events``: patient_id, day, item, value, unit, source (see :data:`EVENT_SCHEMA`).
    ``labels``: patient_id, crs_max_grade, crs_onset_day, crs_episodes, icans_max_grade,
    icans_onset_day, age, product (see :data:`LABEL_SCHEMA`); grades are ASTCT 2019, onsets are the
    ``day`` of the first event that shows the toxicity (the onset fever; the first abnormal neuro
    assessment), null when there is none. Then car_hematotox, icaht_early_grade, days_anc_le_500,
    days_anc_le_100, pht, pht_lineage_count, car_t_cmax, car_t_tmax_day and the outcome labels response_day28,
    os_days, os_event, pfs_days, pfs_event, relapse_nrm_days, relapse_nrm_status, and car_t_dose_per_kg (rules in
    the module docstring).
    """

    events: pl.DataFrame
    labels: pl.DataFrame


class _Draws:
    """Scalar draws for the planning logic, taken from the patient's generator in blocks (fast)."""

    __slots__ = ("_rng", "_buf", "_i")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def u(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.random(256).tolist()
            self._i = 0
        x = self._buf[self._i]
        self._i += 1
        return x

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.u()

    def integer(self, a: int, b: int) -> int:
        """Uniform on a..b inclusive."""
        return min(b, a + int(self.u() * (b - a + 1)))

    def chance(self, p: float) -> bool:
        return self.u() < p

    def weighted(self, weights: tuple[float, ...] | list[float]) -> int:
        """Index drawn with probability proportional to ``weights``."""
        x = self.u() * sum(weights)
        acc = 0.0
        for i, w in enumerate(weights):
            acc += w
            if x < acc:
                return i
        return max(i for i, w in enumerate(weights) if w > 0)


class _Acc:
    """Accumulates rows for the whole cohort: sparse rows as lists, dense blocks as per-patient arrays
    that are turned into rows in one vectorised pass at the end."""

    def __init__(self) -> None:
        # sparse rows: patient index, minute, item, number, decimals, text code, unit
        self.pid: list[int] = []
        self.minute: list[int] = []
        self.item: list[int] = []
        self.num: list[float] = []
        self.dec: list[int] = []
        self.txt: list[int] = []
        self.unit: list[int] = []
        # vitals: per patient the reading minutes, the state at each reading, noise and scalars
        self.v_minute: list[np.ndarray] = []
        self.v_state: list[np.ndarray] = []
        self.v_noise: list[np.ndarray] = []
        self.v_scalars: list[tuple] = []
        # labs: per patient the baseline values, the CRP unit and per-episode parameters; noise
        self.l_params: list[tuple] = []
        self.l_noise: list[np.ndarray] = []
        # neuro assessments: minute, ICANS level, noise; child flag per patient
        self.n_minute: list[np.ndarray] = []
        self.n_level: list[np.ndarray] = []
        self.n_noise: list[np.ndarray] = []
        self.n_child: list[bool] = []
        # hematology and kinetics (see _hematology): per patient uniforms and context
        self.h_uniforms: list[np.ndarray] = []
        self.h_context: list[tuple] = []
        # disease course and outcome (see _outcomes): per patient uniforms and context
        self.o_uniforms: list[np.ndarray] = []
        self.o_context: list[tuple[int, int, int]] = []
        # the infused CAR-T dose (see _cell_dose): per patient uniforms and context
        self.c_uniforms: list[np.ndarray] = []
        self.c_context: list[tuple[int, float, float]] = []


class _Patient:
    """Writes one patient's sparse rows and hourly state."""

    def __init__(self, acc: _Acc, pid: int, hours: int) -> None:
        self.acc = acc
        self.pid = pid
        # hourly state, one row each (views into one array so that a reading gathers all at once)
        self.state = np.zeros((_N_STATE, hours), dtype=np.float32)
        self.fever = self.state[_S_FEVER]  # planned fever temperature, NaN = afebrile
        self.fever[:] = np.nan
        self.bp = self.state[_S_BP]  # 0 normal, 1 hypotension, 2 on vasopressor(s)
        self.o2 = self.state[_S_O2]  # 0 room air, 1 low flow, 2 high flow/mask, 3 positive pressure
        self.o2_device = self.state[_S_DEVICE]  # index into _O2_DEVICES
        self.desat = self.state[_S_DESAT]  # 1 = the hour before oxygen starts (SpO2 88-91 % on room air)
        self.tight = np.zeros(hours, dtype=bool)  # hourly vital signs
        self.jitter = np.zeros(hours, dtype=np.int64)  # minute of each hour's vital-sign reading

    def m(self, hour: int) -> int:
        """The minute of the vital-sign reading in ``hour``: support changes are charted with it, so the
        temperature that justifies an escalation carries the same time stamp."""
        return hour * 60 + int(self.jitter[hour])

    def num(self, minute: float, item: str, value: float, dec: int, unit: str) -> None:
        a = self.acc
        a.pid.append(self.pid)
        a.minute.append(int(round(minute)))
        a.item.append(_I[item])
        a.num.append(round(float(value), dec))
        a.dec.append(dec)
        a.txt.append(-1)
        a.unit.append(_U[unit])

    def text(self, minute: float, item: str, value: str) -> None:
        a = self.acc
        a.pid.append(self.pid)
        a.minute.append(int(round(minute)))
        a.item.append(_I[item])
        a.num.append(0.0)
        a.dec.append(0)
        a.txt.append(_T[value])
        a.unit.append(0)


_S_FEVER, _S_BP, _S_O2, _S_DEVICE, _S_DESAT = range(5)
_N_STATE = 5


@dataclass
class _Episode:
    grade: int
    f0: int  # fever onset hour (a scheduled vital check)
    end: int  # resolution hour: last of fever, oxygen, vasopressor
    toci: float | None  # first tocilizumab (hours), for the IL-6 rebound
    dex_minutes: list[int]


def _track_segments(
    d: _Draws, start: int, peak: int, kind: str, limit: int, long_low: bool
) -> list[tuple[int, int, int]]:
    """Staircase of (start hour, end hour, level): up to ``peak``, then down to 0; clipped to ``limit``."""
    segs: list[tuple[int, int, int]] = []
    t = start
    if kind == "bp":
        ups = [(1, d.integer(1, 3))] if peak >= 2 else []
        if peak == 3:
            ups.append((2, d.integer(2, 10)))
        peak_dur = d.integer(4, 24) if peak == 1 else d.integer(24, 72)
        downs = [(2, d.integer(12, 48))] if peak == 3 else []
    else:
        ups = [(lv, d.integer(2, 10)) for lv in range(1, peak)]
        peak_dur = (
            d.integer(36, 120) if (peak == 1 and long_low) else (d.integer(12, 48) if peak == 1 else d.integer(24, 72))
        )
        downs = [(lv, d.integer(12, 48)) for lv in range(peak - 1, 0, -1)]
    for lv, dur in [*ups, (peak, peak_dur), *downs]:
        if t >= limit:
            break
        e = min(t + dur, limit)
        segs.append((t, e, lv))
        t = e
    return segs


def _plan_episode(d: _Draws, pt: _Patient, grade: int, f0: int, limit: int, ctx: dict) -> _Episode:
    """Write one CRS episode of planned ASTCT ``grade`` starting with a fever at hour ``f0``."""
    age, weight = ctx["age"], ctx["weight"]
    t_peak = min(40.6, 38.5 + 0.3 * grade + d.uniform(0.0, 1.0))
    antipyretic_gap = (6.0, 8.0)
    dex_minutes: list[int] = []
    toci_first: float | None = None

    if grade == 1:
        f1 = min(f0 + d.integer(48, 144), limit)
        end = f1
    else:
        s0 = f0 + d.integer(12, 48)
        bp_peak = o2_peak = 0
        hypo_ok = age >= 10
        if grade == 2:
            mode = d.weighted((0.45, 0.35, 0.20)) if hypo_ok else 0
            o2_peak = 1 if mode in (0, 2) else 0
            bp_peak = 1 if mode in (1, 2) else 0
            main = "o2" if o2_peak else "bp"
        else:
            main = "bp" if d.chance(0.5 if grade == 3 else 0.45) else "o2"
            if main == "bp":
                bp_peak = grade - 1
            else:
                o2_peak = grade - 1
            if d.chance(0.5):
                low = 1 if grade == 3 else d.integer(1, 2)
                if main == "bp":
                    o2_peak = low
                elif low == 2 or hypo_ok:
                    bp_peak = low
        tracks = {}
        if main == "o2":
            tracks["o2"] = _track_segments(d, s0, o2_peak, "o2", limit, long_low=True)
            if bp_peak:
                tracks["bp"] = _track_segments(d, s0 + d.integer(0, 10), bp_peak, "bp", limit, False)
        else:
            tracks["bp"] = _track_segments(d, s0, bp_peak, "bp", limit, False)
            if o2_peak:
                tracks["o2"] = _track_segments(d, s0 + d.integer(0, 10), o2_peak, "o2", limit, long_low=grade == 2)
        # A secondary track must start before the main one has ended (no quiet gap inside the episode).
        main_end = tracks[main][-1][1]
        for k in list(tracks):
            if k != main and (not tracks[k] or tracks[k][0][0] >= main_end - 1):
                del tracks[k]
        support_end = max(segs[-1][1] for segs in tracks.values())

        # Tocilizumab once grade 2 is reached; the fever usually settles after it.
        toci_first = s0 + d.uniform(0.5, 3.0)
        tocis = [toci_first]
        if d.chance(0.15):
            tocis.append(toci_first + d.uniform(8.0, 14.0))
            f1 = math.ceil(tocis[-1] + d.uniform(4.0, 16.0))
        else:
            f1 = math.ceil(toci_first + d.uniform(6.0, 24.0))
            if d.chance({2: 0.2, 3: 0.5, 4: 0.7}[grade]):
                tocis.append(toci_first + d.uniform(8.0, 24.0))
        if grade == 4 and len(tocis) == 2 and d.chance(0.3):
            tocis.append(tocis[-1] + d.uniform(8.0, 24.0))
        f1 = min(max(f1, s0 + 3), limit)
        end = max(f1, support_end)
        per_kg = 12.0 if weight < 30 else 8.0
        dose = min(800, int(round(per_kg * weight)))
        for t in tocis:
            if t < end - 0.5:
                pt.num(t * 60, "tocilizumab", dose, 0, "mg")

        # grade 3 is first reached where either track first reaches level 2 (a vasopressor, HFNC/mask)
        first_g3 = min((s for segs in tracks.values() for s, _e, lv in segs if lv >= 2), default=None)
        if grade >= 3 and first_g3 is not None:
            t = first_g3 + d.uniform(0.5, 3.0)
            for _ in range(d.integer(4, 12)):
                if t >= end - 0.5:
                    break
                m = int(round(t * 60))
                pt.num(m, "dexamethasone", 10, 0, "mg")
                dex_minutes.append(m)
                t += 6.0
        if "bp" in tracks:
            _write_bp_track(d, pt, tracks["bp"], ctx)
        if "o2" in tracks:
            _write_o2_track(d, pt, tracks["o2"], ctx)

    pt.fever[f0:f1] = t_peak
    t = f0 + d.uniform(0.3, 1.0)
    while t < f1 - 0.5:
        pt.text(t * 60, "antipyretic", "paracetamol")
        t += d.uniform(*antipyretic_gap)
    pt.tight[f0 : min(end + 12, len(pt.tight))] = True
    return _Episode(grade=grade, f0=f0, end=end, toci=toci_first, dex_minutes=dex_minutes)


def _write_bp_track(d: _Draws, pt: _Patient, segs: list[tuple[int, int, int]], ctx: dict) -> None:
    weight, per_kg = ctx["weight"], ctx["ne_per_kg"]
    for s, e, lv in segs:
        pt.bp[s:e] = 1 if lv == 1 else 2
        if lv == 1:
            bolus = 1000 if (weight >= 50 and d.chance(0.4)) else (500 if weight >= 50 else 10 * round(2 * weight))
            pt.num(pt.m(s) + d.integer(5, 20), "fluid_bolus", bolus, 0, "mL")
            if e - s >= 3 and d.chance(0.5):
                pt.num((s + d.integer(1, e - s - 1)) * 60 + d.integer(5, 25), "fluid_bolus", bolus, 0, "mL")
    on = [(s, e, lv) for s, e, lv in segs if lv >= 2]
    if not on:
        return
    ne_on, ne_off = on[0][0], on[-1][1]

    def ne_rate(high: bool) -> tuple[float, int, str]:
        if per_kg:
            return (d.uniform(0.08, 0.3) if high else d.uniform(0.03, 0.15)), 2, "ug/kg/min"
        r = d.uniform(8.0, 30.0) if high else d.uniform(2.0, 12.0)
        return round(r * 2) / 2, 1, "ug/min"

    level3 = [(s, e) for s, e, lv in on if lv == 3]
    rate, dec, unit = ne_rate(False)
    pt.num(pt.m(ne_on), "norepinephrine", max(rate, 0.01), dec, unit)
    t = ne_on + d.uniform(3.0, 8.0)
    while t < ne_off - 1:
        high = any(a <= t < b for a, b in level3)
        rate, dec, unit = ne_rate(high)
        pt.num(t * 60, "norepinephrine", max(rate, 0.01), dec, unit)
        t += d.uniform(3.0, 8.0)
    pt.num(pt.m(ne_off), "norepinephrine", 0, 0, unit)
    for a, b in level3:
        which = d.weighted((0.4, 0.35, 0.25))
        if which == 0:
            pt.num(pt.m(a), "epinephrine", d.uniform(1.0, 10.0), 1, "ug/min")
            pt.num(pt.m(b), "epinephrine", 0, 0, "ug/min")
        elif which == 1:
            pt.num(pt.m(a), "phenylephrine", d.integer(40, 200), 0, "ug/min")
            pt.num(pt.m(b), "phenylephrine", 0, 0, "ug/min")
        else:
            pt.num(pt.m(a), "dopamine", d.uniform(5.0, 15.0), 1, "ug/kg/min")
            pt.num(pt.m(b), "dopamine", 0, 0, "ug/kg/min")
    if d.chance(0.25):
        v_on = ne_on + d.uniform(1.0, 6.0)
        v_off = ne_off - d.uniform(0.5, 3.0)
        if v_off - v_on >= 2.0:
            pt.num(v_on * 60, "vasopressin", 0.03 if d.chance(0.5) else 0.04, 2, "U/min")
            pt.num(v_off * 60, "vasopressin", 0, 0, "U/min")


def _write_o2_track(d: _Draws, pt: _Patient, segs: list[tuple[int, int, int]], ctx: dict) -> None:
    fio2_fraction = ctx["fio2_fraction"]
    max_flow = d.integer(2, 6)
    high = "high_flow_nasal_cannula" if d.chance(0.55) else "face_mask"
    ppv = "bipap" if d.chance(0.5) else "mechanical_ventilation"
    first = segs[0][0]
    if first >= 1:
        pt.desat[first - 1] = True

    def fio2(lo: int, hi: int, minute: float) -> None:
        pct = d.integer(lo, hi)
        if fio2_fraction:
            pt.num(minute, "fio2", pct / 100, 2, "1")
        else:
            pt.num(minute, "fio2", pct, 0, "%")

    for s, e, lv in segs:
        pt.o2[s:e] = lv
        m = pt.m(s)
        if lv == 1:
            pt.o2_device[s:e] = _O2_DEVICES.index("nasal_cannula")
            pt.text(m, "oxygen", "nasal_cannula")
            pt.num(m, "oxygen_flow", d.integer(1, max_flow), 0, "L/min")
            t = s + d.uniform(3.0, 10.0)
            while t < e - 1:
                pt.num(t * 60, "oxygen_flow", d.integer(1, max_flow), 0, "L/min")
                t += d.uniform(3.0, 10.0)
        elif lv == 2:
            pt.o2_device[s:e] = _O2_DEVICES.index(high)
            pt.text(m, "oxygen", high)
            if high == "high_flow_nasal_cannula":
                pt.num(m, "oxygen_flow", d.integer(20, 60), 0, "L/min")
                fio2(30, 70, m)
            else:
                pt.num(m, "oxygen_flow", d.integer(8, 10), 0, "L/min")
                fio2(35, 60, m)
        else:
            pt.o2_device[s:e] = _O2_DEVICES.index(ppv)
            pt.text(m, "oxygen", ppv)
            fio2(40, 80 if ppv == "bipap" else 100, m)
    end = segs[-1][1]
    pt.text(pt.m(end), "oxygen", "room_air")
    pt.num(pt.m(end), "oxygen_flow", 0, 0, "L/min")


def _bump(x: np.ndarray, tau: float) -> np.ndarray:
    """Gamma-like pulse: 0 before x = 0, peak 1 at x = tau."""
    y = np.clip(x, 0.0, None) / tau
    return y * np.exp(1.0 - y)


def _patient_streams(seed: int, n_patients: int) -> np.ndarray:
    """Four 64-bit words per patient from one SeedSequence: patient p's PCG64 state and increment.
    SeedSequence output is prefix-stable, so patient p's stream does not depend on the cohort size."""
    sequence = np.random.SeedSequence([_STREAM, 1 if seed < 0 else 0, abs(seed)])
    return sequence.generate_state(4 * n_patients, dtype=np.uint64).reshape(n_patients, 4)


def _reseed(bit_generator: np.random.PCG64, words: np.ndarray) -> None:
    w = [int(x) for x in words]
    bit_generator.state = {
        "bit_generator": "PCG64",
        "has_uint32": 0,
        "uinteger": 0,
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3] | 1},
    }


def _simulate_patient(local: int, rng: np.random.Generator, days: int, acc: _Acc) -> tuple:
    """Simulate one patient (its stream already seeded in ``rng``) into ``acc`` as its ``local``-th
    patient; return its labels."""
    d = _Draws(rng)
    hours = days * 24
    limit = hours - 24  # every CRS episode resolves at least a day before the end of follow-up
    pt = _Patient(acc, local, hours)

    # ------------------------------------------------------------------ baseline
    child = d.chance(P_CHILD)
    if child:
        age = float(d.integer(3, 11))
        product, disease, params = "tisa-cel", "B-ALL", _CHILD
    else:
        product = PRODUCTS[d.weighted([_PRODUCT_PARAMS[p]["share"] for p in PRODUCTS])]
        params = _PRODUCT_PARAMS[product]
        if product in ("cilta-cel", "ide-cel"):
            disease = "MM"
            age = float(min(84, max(38, round(d.uniform(45, 78) + d.uniform(-7, 7)))))
        elif product == "brexu-cel":
            disease = "MCL" if d.chance(0.6) else "B-ALL"
            age = float(d.integer(55, 80) if disease == "MCL" else d.integer(19, 75))
        elif product == "tisa-cel" and d.chance(0.2):
            disease, age = "B-ALL", float(d.integer(18, 25))
        else:
            disease = ("DLBCL", "HGBL", "PMBCL", "FL")[d.weighted((70, 14, 5, 11))]
            age = float(min(84, max(19, round(d.uniform(42, 78) + d.uniform(-10, 10)))))
    male = d.chance(0.6)
    if child:
        weight = round((2.2 * age + 8.0) * d.uniform(0.85, 1.25), 1)
    else:
        weight = round((d.uniform(62, 100) if male else d.uniform(50, 88)) * d.uniform(0.9, 1.15), 1)
    degf = d.chance(0.3)
    crp_mgdl = d.chance(0.3)
    ctx = dict(age=age, weight=weight, ne_per_kg=d.chance(0.4), fio2_fraction=d.chance(0.4))

    pt.text(0, "infusion", product)
    pt.num(0, "age", age, 0, "a")
    pt.num(0, "weight", weight, 1, "kg")
    pt.text(0, "sex", "male" if male else "female")
    pt.text(0, "disease", disease)

    # vital-sign schedule: every k hours at hours == phase (mod k), hourly while CRS is active
    k = (2, 3, 4)[d.weighted((0.45, 0.35, 0.20))]
    phase = d.integer(0, k - 1)
    jitter = rng.integers(1, 10, size=hours)  # minutes after the hour
    pt.jitter = jitter

    def snap(h: int) -> int:
        return h + (phase - h) % k

    # ------------------------------------------------------------------ CRS
    episodes: list[_Episode] = []
    if d.chance(params["p_crs"]):
        w = [
            _GRADE_GIVEN_CRS[0],
            _GRADE_GIVEN_CRS[1],
            _GRADE_GIVEN_CRS[2] * params["severe"],
            _GRADE_GIVEN_CRS[3] * params["severe"],
        ]
        grade = 1 + d.weighted(w)
        onset_day = 1 + d.weighted(params["onset"])
        f0 = snap(min(onset_day * 24 + d.integer(0, 23), 8 * 24 - 1 - k))
        episodes.append(_plan_episode(d, pt, grade, f0, limit, ctx))
        if d.chance(_P_SECOND_EPISODE):
            f0b = snap(episodes[0].end + d.integer(60, 144))
            g2 = 1 if (grade == 1 or d.chance(0.7)) else 2
            if g2 == 2 and f0b + 110 > limit:
                g2 = 1
            if f0b + 40 <= limit:
                episodes.append(_plan_episode(d, pt, g2, f0b, limit, ctx))

    # ------------------------------------------------------------------ ICANS
    icans = np.zeros(hours, dtype=np.int8)
    crs_grade = max((e.grade for e in episodes), default=0)
    p_icans = min(0.95, _P_ICANS_BY_CRS[crs_grade] * params["icans"])
    if d.chance(p_icans):
        if crs_grade >= 3:
            peak = 1 + d.weighted((0.2, 0.3, 0.35, 0.15))
        else:
            peak = 1 + d.weighted((0.4, 0.32, 0.2, 0.08))
        if episodes:
            i0 = episodes[0].f0 + d.integer(12, 120)
        else:
            i0 = d.integer(72, 240)
        i0 = min(max(i0, 72), 240)
        t = i0
        steps = [(lv, d.integer(6, 24)) for lv in range(1, peak) if d.chance(0.7)]
        steps.append((peak, max(13, d.integer(12, 60))))
        steps += [(lv, d.integer(12, 36)) for lv in range(peak - 1, 0, -1)]
        for lv, dur in steps:
            icans[t : min(t + dur, hours - 6)] = lv
            t += dur
            if t >= hours - 6:
                break

    # ------------------------------------------------------------------ vitals (rows built in _vital_rows)
    mask = pt.tight.copy()
    mask[phase::k] = True
    hr = np.flatnonzero(mask)
    acc.v_minute.append(hr * 60 + jitter[hr])
    acc.v_state.append(pt.state[:, hr])
    acc.v_noise.append(rng.random((hr.size, 10)))
    if child:
        base_sbp, sbp_lo, sbp_hi = d.uniform(100, 112), 96.0, 128.0
        base_hr, base_rr = d.uniform(85, 110), d.uniform(18, 24)
    else:
        base_sbp, sbp_lo, sbp_hi = d.uniform(108, 140), 96.0, 175.0
        base_hr, base_rr = d.uniform(62, 90), d.uniform(13, 18)
    threshold = 90.0 if age >= 10 else 70.0 + 2.0 * age
    acc.v_scalars.append(
        (d.uniform(36.4, 36.9), base_sbp, sbp_lo, sbp_hi, base_hr, base_rr, threshold, d.uniform(0.58, 0.66), degf)
    )

    # ------------------------------------------------------------------ labs (every morning; see _lab_rows)
    # per episode: onset hour, first tocilizumab hour (NaN if none), CRP, IL-6 and ferritin amplitudes
    lab_eps = [(np.nan, np.nan, 0.0, 0.0, 0.0)] * _MAX_EPISODES
    for i, ep in enumerate(episodes):
        g = ep.grade
        lab_eps[i] = (
            float(ep.f0),
            np.nan if ep.toci is None else ep.toci,
            d.uniform(*{1: (40, 120), 2: (80, 200), 3: (120, 280), 4: (180, 350)}[g]),
            d.uniform(*{1: (30, 300), 2: (150, 1500), 3: (600, 5000), 4: (2000, 20000)}[g]),
            d.uniform(*{1: (0.3, 1.5), 2: (1.0, 3.0), 3: (2.0, 8.0), 4: (5.0, 20.0)}[g]),
        )
    acc.l_params.append(
        (
            d.uniform(2.0, 25.0),
            d.uniform(2.0, 25.0),
            d.uniform(150.0, 1500.0),
            crp_mgdl,
            *(x for ep in lab_eps for x in ep),
        )
    )
    acc.l_noise.append(rng.random((days, 4)))

    # ------------------------------------------------------------------ neuro assessments (see _neuro_rows)
    kn = 8 if d.chance(0.5) else 12
    a_hr = np.arange(d.integer(0, kn - 1), hours, kn)
    na = a_hr.size
    lv = icans[a_hr]
    a_min = a_hr * 60 + rng.integers(15, 46, size=na)
    acc.n_minute.append(a_min)
    acc.n_level.append(lv)
    acc.n_noise.append(rng.random((na, 2)))
    acc.n_child.append(child)

    # ICANS label from the assessments written; extra events never precede the first abnormal one.
    observed = np.flatnonzero(lv >= 1)
    icans_grade = int(lv.max()) if na else 0
    icans_onset = float(a_min[observed[0]]) / 1440.0 if observed.size else None
    if icans_grade >= 3:
        first_peak = int(a_min[np.flatnonzero(lv == icans_grade)[0]])
        extra: list[tuple[int, str, str]] = []
        if icans_grade == 3:
            if d.chance(0.2):
                extra.append((first_peak + d.integer(30, 180), "seizure", "rapidly_resolving"))
            if d.chance(0.1):
                extra.append((first_peak + d.integer(60, 360), "cerebral_edema", "focal"))
        elif d.chance(0.3):
            extra.append((first_peak + d.integer(60, 360), "cerebral_edema", "diffuse"))
        for minute, item, value in extra:
            if minute < hours * 60:
                pt.text(minute, item, value)
    crs_dex = [m for ep in episodes for m in ep.dex_minutes]
    if icans_grade >= 2:
        t = float(a_min[np.flatnonzero(lv >= 2)[0]]) + d.integer(30, 120)
        for _ in range(16):
            h = int(t // 60)
            if h >= hours or (icans[h] < 2 and icans[max(h - 12, 0)] < 2):
                break
            if all(abs(t - m) >= 180 for m in crs_dex):
                pt.num(t, "dexamethasone", 10, 0, "mg")
            t += 360.0

    crs_onset = (episodes[0].f0 * 60 + int(jitter[episodes[0].f0])) / 1440.0 if episodes else None
    # ------------------------------------------------------------------ hematology, kinetics (see _hematology)
    # Drawn last from the patient's stream, so the CRS and ICANS course above is what it was without them.
    acc.h_context.append((crs_grade, PRODUCTS.index(product), float(child), weight, float(crp_mgdl)))
    acc.h_uniforms.append(rng.random(_H_SCALARS + days * _H_DAILY))
    # ------------------------------------------------------------------ disease course, outcome (see _outcomes)
    # Drawn after the hematology, for the same reason.
    acc.o_context.append((_efficacy_group(product, disease), crs_grade, icans_grade))
    acc.o_uniforms.append(rng.random(_O_SCALARS))
    # ------------------------------------------------------------------ CAR-T dose (see _cell_dose)
    # Drawn after the outcome, last in the stream, so every row and label above is unchanged.
    acc.c_context.append((_dose_group(product, disease, weight), weight, float(child)))
    acc.c_uniforms.append(rng.random(_C_SCALARS))
    return (crs_grade, crs_onset, len(episodes), icans_grade, icans_onset, age, product)


# A row block: (patient index uint32, minute int32, item uint8, value code uint32, unit uint8).
# Values travel as integer codes and become strings only once per distinct value (_ValueFormatter).
_Block = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_MINUTE_OFFSET = 30 * 1440  # the earliest row is day -6
_SEG = 1_000_000  # value codes: decimals * _SEG + round(value * 10**decimals); texts from 4 * _SEG


class _RowParts:
    """The rows of a chunk of ``n`` patients, added per item as a mask over per-patient (n) or per-patient and
    column (n, k) arrays of minutes, value codes and units; :meth:`block` joins them."""

    def __init__(self, n: int) -> None:
        self._pid = np.arange(n, dtype=np.uint32)
        self._parts: list[_Block] = []

    def add(self, mask: np.ndarray, minute: np.ndarray, item: str, code: np.ndarray, unit: np.ndarray | int) -> None:
        shape = minute.shape
        m = _per_row(mask, shape)
        self._parts.append(
            (
                _per_row(self._pid, shape)[m],
                minute[m].astype(np.int32),
                np.full(int(m.sum()), _I[item], dtype=np.uint8),
                _per_row(code, shape)[m].astype(np.uint32),
                _per_row(unit, shape)[m].astype(np.uint8),
            )
        )

    def block(self) -> _Block:
        return tuple(np.concatenate([part[i] for part in self._parts]) for i in range(5))  # type: ignore[return-value]


def _per_row(x: np.ndarray | int, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` per patient (n) or per patient and column, broadcast to ``shape``."""
    a = np.asarray(x)
    return np.broadcast_to(a[:, None] if a.ndim == 1 and len(shape) == 2 else a, shape)


def _patient_index(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.uint32), counts)


def _vital_rows(acc: _Acc) -> _Block:
    """Seven rows per vital-sign reading, computed for the whole cohort at once."""
    counts = [m.size for m in acc.v_minute]
    p = _patient_index(counts)
    n = p.size
    st = np.concatenate(acc.v_state, axis=1)
    u = np.concatenate(acc.v_noise)
    sc = np.asarray(acc.v_scalars, dtype=np.float64)[p]
    base_t, base_sbp, sbp_lo, sbp_hi, base_hr, base_rr, threshold, ratio, degf = sc.T
    # three Box-Muller pairs -> six standard normals
    r = np.sqrt(-2.0 * np.log1p(-u[:, 0:3]))
    z = np.concatenate([r * np.cos(2 * np.pi * u[:, 3:6]), r * np.sin(2 * np.pi * u[:, 3:6])], axis=1)
    w = u[:, 6:10]
    minute = np.concatenate(acc.v_minute)
    hour_of_day = (minute // 60) % 24

    fever = st[_S_FEVER].astype(np.float64)
    febrile = ~np.isnan(fever)
    bp, o2 = st[_S_BP], st[_S_O2]
    desat = st[_S_DESAT] > 0
    vent = st[_S_DEVICE] == _O2_DEVICES.index("mechanical_ventilation")

    circ = 0.25 * np.sin(2 * np.pi * (hour_of_day - 10) / 24)
    temp = np.where(
        febrile,
        np.clip(np.nan_to_num(fever) - 0.5 * np.abs(z[:, 0]), 38.2, 41.0),
        np.clip(base_t + circ + 0.15 * z[:, 0], 35.8, 37.6),
    )
    temp = np.round(temp, 1)
    temp = np.where(degf > 0, np.round(temp * 1.8 + 32.0, 1), temp)
    sbp = np.clip(base_sbp + 6.0 * z[:, 1] - 4.0 * febrile, sbp_lo, sbp_hi)
    sbp = np.where(bp == 1, np.clip(threshold - 2.0 - 10.0 * w[:, 0], 55.0, None), sbp)
    sbp = np.round(np.where(bp == 2, 92.0 + 16.0 * w[:, 0], sbp))
    dbp = np.clip(sbp * ratio + 4.0 * z[:, 2], 56.0, sbp - 25.0)
    dbp = np.where(bp == 1, np.minimum(38.0 + 14.0 * w[:, 1], sbp - 20.0), dbp)
    dbp = np.round(np.where(bp == 2, 52.0 + 10.0 * w[:, 1], dbp))
    mapv = np.round((sbp + 2.0 * dbp) / 3.0)
    hrate = np.round(
        np.clip(
            base_hr
            + 10.0 * np.where(febrile, temp - 37.0, 0.0) * (degf == 0)
            + 5.5 * np.where(febrile, temp - 98.6, 0.0) * (degf > 0)
            + 12.0 * (bp == 1)
            + 10.0 * (bp == 2)
            + 5.0 * z[:, 3],
            45.0,
            185.0,
        )
    )
    rr = base_rr + 3.0 * febrile + np.array([0.0, 4.0, 8.0, 6.0])[o2.astype(np.int64)] + 1.5 * z[:, 4]
    rr = np.round(np.clip(np.where(vent, 14.0 + 8.0 * w[:, 2], rr), 8.0, 50.0))
    spo2 = np.clip(97.5 - 1.0 * febrile + 1.2 * z[:, 5], 94.0, 100.0)
    spo2 = np.where(o2 >= 1, 91.0 + 7.0 * w[:, 3], spo2)
    spo2 = np.round(np.where(desat, 88.0 + 3.4 * w[:, 3], spo2))

    codes = np.empty((n, 7), dtype=np.uint32)
    codes[:, 0] = _SEG + np.rint(temp * 10.0)
    for j, col in enumerate((sbp, dbp, mapv, hrate, rr, spo2), start=1):
        codes[:, j] = col
    unit = np.tile(_VITAL_UNITS.astype(np.uint8), (n, 1))
    unit[degf > 0, 0] = _U["[degF]"]
    return (
        np.repeat(p, 7),
        np.repeat(minute.astype(np.int32), 7),
        np.tile(_VITAL_ITEMS.astype(np.uint8), n),
        codes.ravel(),
        unit.ravel(),
    )


def _lab_rows(acc: _Acc, days: int) -> _Block:
    """CRP, IL-6 and ferritin every morning (06:00-07:00) for the whole chunk at once.

    Each CRS episode adds a pulse that peaks about 1.5 days (CRP), 0.5 day (IL-6) and 3 days (ferritin)
    after the onset fever, scaled by its grade; IL-6 rises again after tocilizumab (receptor blockade).
    """
    n_pat = len(acc.l_params)
    prm = np.asarray(acc.l_params, dtype=np.float64)
    base_crp, base_il6, base_fer, mgdl = (prm[:, i : i + 1] for i in range(4))
    eps = prm[:, 4:].reshape(n_pat, _MAX_EPISODES, 5)
    u = np.concatenate(acc.l_noise).reshape(n_pat, days, 4)
    h = np.arange(days, dtype=np.float64)[None, :] * 24.0 + 6.0
    crp, il6, fer = np.repeat(base_crp, days, 1), np.repeat(base_il6, days, 1), np.ones((n_pat, days))
    for j in range(_MAX_EPISODES):
        f0, toci, a_crp, a_il6, a_fer = (eps[:, j, i : i + 1] for i in range(5))
        since = np.nan_to_num(h - f0, nan=-1.0)  # no episode: never "after onset"
        crp = crp + a_crp * _bump(since + 6, 48.0)
        il6 = il6 + a_il6 * (_bump(since + 6, 18.0) + 0.8 * _bump(np.nan_to_num(h - toci, nan=-1.0), 24.0))
        fer = fer + a_fer * _bump(since, 72.0)
    r, angle = np.sqrt(-2.0 * np.log1p(-u[:, :, 0])), 2 * np.pi * u[:, :, 1]
    crp = np.clip(crp * np.exp(0.08 * r * np.cos(angle)), 0.2, 900.0)
    il6 = np.clip(il6 * np.exp(0.15 * r * np.sin(angle)), 1.0, 99000.0)
    fer = np.clip(base_fer * fer * np.exp(0.08 * (2 * u[:, :, 2] - 1)), 10.0, 450000.0)
    mg_dl = np.repeat(mgdl > 0, days, 1).ravel()
    crp_code = np.where(mg_dl, 2 * _SEG + np.rint(crp.ravel() * 10.0), _SEG + np.rint(crp.ravel() * 10.0))
    codes = np.column_stack([crp_code, _SEG + np.rint(il6.ravel() * 10.0), np.rint(fer.ravel())])
    n = n_pat * days
    unit = np.tile(np.array([_U["mg/L"], _U["pg/mL"], _U["ng/mL"]], dtype=np.uint8), (n, 1))
    unit[mg_dl, 0] = _U["mg/dL"]
    minute = (np.rint(h * 60.0) + np.floor(60.0 * u[:, :, 3])).astype(np.int32).ravel()
    p = _patient_index([days] * n_pat)
    return (
        np.repeat(p, 3),
        np.repeat(minute, 3),
        np.tile(_LAB_ITEMS.astype(np.uint8), n),
        codes.astype(np.uint32).ravel(),
        unit.ravel(),
    )


def _neuro_rows(acc: _Acc) -> _Block:
    """ICE (age >= 12) or CAPD (age < 12) plus consciousness for every neuro assessment.

    Per ICANS level (ASTCT): 0 = ICE 10 / CAPD 0, awake; 1 = ICE 7-9 / CAPD 1-8, awake or awakens
    spontaneously; 2 = ICE 3-6 (awake to voice) or CAPD 1-8 with awakens to voice; 3 = ICE 0-2 / CAPD
    >= 9, awake to touch (ICE 0 only with awakens to touch); 4 = unarousable, ICE 0, no CAPD.
    """
    counts = [m.size for m in acc.n_minute]
    p = _patient_index(counts)
    lv = np.concatenate(acc.n_level).astype(np.int64)
    u = np.concatenate(acc.n_noise)
    child = np.repeat(np.asarray(acc.n_child, dtype=bool), counts)
    minute = np.concatenate(acc.n_minute).astype(np.int32)
    ice = np.select(
        [lv == 0, lv == 1, lv == 2, lv == 3],
        [10, 7 + np.floor(3 * u[:, 0]), 3 + np.floor(4 * u[:, 0]), np.floor(3 * u[:, 0])],
        0,
    )
    capd = np.select([lv == 0, lv <= 2], [0, 1 + np.floor(8 * u[:, 0])], 9 + np.floor(12 * u[:, 0]))
    score = np.where(child, capd, ice)
    cons_adult = np.select(
        [lv == 0, lv == 1, lv == 2, lv == 3],
        [0, np.floor(2 * u[:, 1]), np.floor(3 * u[:, 1]), np.where(ice == 0, 3, np.floor(4 * u[:, 1]))],
        4,
    )
    cons_child = np.select(
        [lv == 0, lv == 1, lv == 2, lv == 3], [0, np.floor(2 * u[:, 1]), 2, np.floor(4 * u[:, 1])], 4
    )
    cons = np.where(child, cons_child, cons_adult)
    has_score = ~(child & (lv == 4))
    score_item = np.where(child, _I["capd_score"], _I["ice_score"]).astype(np.uint8)
    n_score = int(has_score.sum())
    return (
        np.concatenate([p[has_score], p]),
        np.concatenate([minute[has_score], minute]),
        np.concatenate([score_item[has_score], np.full(p.size, _I["consciousness"], dtype=np.uint8)]),
        np.concatenate([score[has_score], 4 * _SEG + _CONS0 + cons]).astype(np.uint32),
        np.concatenate([np.full(n_score, _U["{score}"], dtype=np.uint8), np.zeros(p.size, dtype=np.uint8)]),
    )


# ---------------------------------------------------------------------------------------------- hematology
_H_SCALARS = 96  # uniforms per patient for the hematology and kinetics plan (not all are used)
_H_DAILY = 12  # uniforms per patient and day
CAR_T_DAYS = (1, 4, 7, 10, 14, 21, 28)
CAR_T_LLOQ = 5  # copies/ug genomic DNA; lower levels are written "<5"
# Planned early ICAHT class 0-4 by CAR-HEMATOTOX risk (low 0-1, high >= 2), and after CRS grade >= 3.
_ICAHT_LOW = (0.27, 0.47, 0.19, 0.055, 0.015)
_ICAHT_HIGH = (0.08, 0.33, 0.34, 0.19, 0.06)
_ICAHT_SEVERE_CRS = (0.05, 0.27, 0.33, 0.25, 0.10)
# Per product (PRODUCTS order): median CAR-T peak (copies/ug gDNA), weights of the peak at day 7, 10, 14.
_CART_PEAK = (
    (20000.0, (0.6, 0.3, 0.1)),
    (4000.0, (0.5, 0.3, 0.2)),
    (12000.0, (0.45, 0.35, 0.2)),
    (30000.0, (0.55, 0.3, 0.15)),
    (60000.0, (0.15, 0.35, 0.5)),
    (25000.0, (0.25, 0.4, 0.35)),
)
# Label columns from _hematology, in LABEL_SCHEMA order.
_HEMA_LABELS = (
    "car_hematotox",
    "icaht_early_grade",
    "days_anc_le_500",
    "days_anc_le_100",
    "pht",
    "pht_lineage_count",
    "car_t_cmax",
    "car_t_tmax_day",
)
_EARLY_END = 30  # early ICAHT window days 0-30
_CARRY_DAYS = 7  # the engine's default max_interpolation_gap_days: the last count is carried this far
_STABLE_RECOVERY = 3  # default stable_recovery_days: shorter recoveries between neutropenic days are bridged
_PHT_LLN = {"anc": 1800, "plt": 150, "hgb": 120}  # /uL, 10^9/L, g/L: the default LLNs of [prolonged_cytopenia]


def _normal(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _pick(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row an index drawn with probability proportional to that row's ``weights`` (n, k)."""
    cum = np.cumsum(weights, axis=1)
    cum = cum / cum[:, -1:]
    return (u[:, None] >= cum[:, :-1]).sum(axis=1)


def _piecewise(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation: ``xs``, ``ys`` (n, k) with xs non-decreasing, at the points ``x`` (m,);
    constant outside the knots."""
    idx = (x[None, :, None] >= xs[:, None, :]).sum(axis=2).clip(1, xs.shape[1] - 1)
    x0, x1 = np.take_along_axis(xs, idx - 1, 1), np.take_along_axis(xs, idx, 1)
    y0, y1 = np.take_along_axis(ys, idx - 1, 1), np.take_along_axis(ys, idx, 1)
    span = x1 - x0
    w = np.clip(np.divide(x[None, :] - x0, span, out=np.zeros_like(span), where=span > 0), 0.0, 1.0)
    return y0 + w * (y1 - y0)


def _runs(flag: np.ndarray) -> np.ndarray:
    """Per row and column the length of the run of True the column ends so far (0 where False)."""
    out = np.zeros(flag.shape, dtype=np.int32)
    run = np.zeros(flag.shape[0], dtype=np.int32)
    for j in range(flag.shape[1]):
        run = (run + 1) * flag[:, j]
        out[:, j] = run
    return out


def _bridged(below: np.ndarray, stable: int) -> np.ndarray:
    """Days above the threshold in a run shorter than ``stable`` with a day below on both sides count as
    below (a non-stable recovery). ``below`` ends with a column that is False (the days after the data)."""
    n, m = below.shape
    out = below.copy()
    above = ~below
    for length in range(1, stable):
        for s in range(1, m - length):
            gap = below[:, s - 1] & below[:, s + length] & above[:, s : s + length].all(axis=1)
            out[:, s : s + length] |= gap[:, None]
    return out


def early_icaht_from_daily(anc_ul: np.ndarray, stable: int = _STABLE_RECOVERY) -> tuple[np.ndarray, ...]:
    """Early ICAHT from complete daily ANC (/uL) from day 0 to day 30 or later (n, >= 31), under the default
    rules: recoveries shorter than ``stable`` days between neutropenic days are bridged (days after the
    series count as recovered), longest stretch in days 0-30, the bands of icaht_eha2023, and grade 4 for a
    stretch <= 500/uL that holds on day 30 and started by day 3. Returns grade, days <= 500, days <= 100."""
    n = anc_ul.shape[0]
    tail = np.zeros((n, 1), dtype=bool)  # later days have no count: above (the engine's best case, = Liang)
    b500 = _bridged(np.hstack([anc_ul <= 500, tail]), stable)[:, : _EARLY_END + 1]
    b100 = _bridged(np.hstack([anc_ul <= 100, tail]), stable)[:, : _EARLY_END + 1]
    r500, r100 = _runs(b500), _runs(b100)
    d500, d100 = r500.max(axis=1), r100.max(axis=1)
    never = b500[:, _EARLY_END] & (_EARLY_END - r500[:, _EARLY_END] + 1 <= 3)
    grade = np.select(
        [never | (d100 >= 14) | (d500 >= 31), (d100 >= 7) | (d500 >= 14), d500 >= 7, d500 >= 1], [4, 3, 2, 1], 0
    )
    return grade, d500, d100


def car_hematotox_points(
    plt: np.ndarray, anc_ul: np.ndarray, hgb_gl: np.ndarray, crp_mg_l10: np.ndarray, ferritin: np.ndarray
) -> np.ndarray:
    """CAR-HEMATOTOX (developer-group boundaries; docs/scores.md): PLT 10^9/L, ANC /uL, Hb g/L, CRP in
    tenths of mg/L, ferritin ng/mL."""
    return (
        np.where(plt < 75, 2, np.where(plt <= 175, 1, 0))
        + (anc_ul <= 1200)
        + (hgb_gl <= 90)
        + (crp_mg_l10 >= 300)
        + np.where(ferritin > 2000, 2, np.where(ferritin >= 650, 1, 0))
    ).astype(np.int64)


class _Columns:
    """Successive columns of a (patients, k) array of uniforms: each call is one draw for every patient."""

    def __init__(self, uniforms: np.ndarray) -> None:
        self._uniforms = uniforms
        self._next = 0

    def __call__(self) -> np.ndarray:
        column = self._uniforms[:, self._next]
        self._next += 1
        return column

    def normal(self) -> np.ndarray:
        return _normal(self(), self())

    def integer(self, a: int, b: int) -> np.ndarray:
        """Uniform on a..b inclusive."""
        return a + np.floor((b - a + 1) * self()).astype(np.int64)


def _hematology(acc: _Acc, days: int) -> tuple[_Block, dict[str, np.ndarray], np.ndarray]:
    """Lymphodepletion, baseline labs, daily blood counts with G-CSF and transfusions, and CAR-T levels for a
    chunk of patients at once; returns the rows, the hematology labels and the planned early ICAHT class."""
    n = len(acc.h_context)
    crs, prod, child, weight, crp_mgdl = np.asarray(acc.h_context, dtype=np.float64).reshape(n, 5).T
    prod = prod.astype(np.int64)
    allu = np.stack(acc.h_uniforms) if n else np.zeros((0, _H_SCALARS + days * _H_DAILY))
    daily = allu[:, _H_SCALARS:].reshape(n, days, _H_DAILY)
    u = _Columns(allu[:, :_H_SCALARS])
    z = u.normal

    d = np.arange(days, dtype=np.float64)
    dd = d[None, :]

    # ---------------------------------------------------------------- baseline (before lymphodepletion)
    reduced = u() < 0.45  # a reduced marrow reserve / more inflammation: the CAR-HEMATOTOX high-risk share
    panel_minute = np.where(u() < 0.5, -6, -5) * 1440 + 360 + np.floor(90 * u())
    ld_minute = -5 * 1440 + 540 + np.floor(180 * u())  # Flu/Cy starts after the panel, day -5 09:00-12:00
    plt0 = np.rint(np.clip(np.exp(np.log(215.0) + 0.35 * z() - reduced * 1.0 * u()), 12, 650))
    plt0 = np.where(plt0 == 75, 76, plt0)  # off the cut-off where the published implementations disagree
    anc0 = 10 * np.rint(np.clip(np.exp(np.log(3.3) + 0.4 * z() - reduced * 0.9 * u()), 0.3, 15.0) * 100)
    anc0 = np.where(anc0 == 1200, 1210, anc0)
    hgb0 = np.rint(np.clip(12.6 + 1.4 * z() - reduced * 2.4 * u(), 7.0, 16.5) * 10)  # g/L = tenths of g/dL
    crp0 = np.rint(np.clip(np.exp(np.log(7.0) + 1.0 * z() + 0.6 * reduced), 0.3, 250.0) * 10)  # tenths of mg/L
    fer0 = np.rint(np.clip(np.exp(np.log(420.0) + 0.85 * z() + 0.6 * reduced), 15, 20000))
    ldh0 = np.rint(np.clip(np.exp(np.log(240.0) + 0.4 * z() + 0.25 * reduced), 110, 3000))
    crea0 = np.rint(np.clip(0.85 + 0.22 * z(), 0.4, 2.5) * 100)  # hundredths of mg/dL
    crea_umol = u() < 0.25
    hematotox = car_hematotox_points(plt0, anc0, hgb0, crp0, fer0)
    high = hematotox >= 2

    # ---------------------------------------------------------------- neutrophil course (planned class 0-4)
    weights = np.where(high[:, None], np.array(_ICAHT_HIGH), np.array(_ICAHT_LOW))
    weights = np.where((crs >= 3)[:, None], np.array(_ICAHT_SEVERE_CRS), weights)
    c = _pick(u(), weights)
    u_len, u_opt, u_deep, u_deep2 = u(), u(), u(), u()
    option_a = u_opt < 0.6  # class 3: <= 500/uL for 14-24 d; otherwise <= 100/uL for 7-13 d
    aplastic = (c == 4) & (u_opt < 0.4)  # class 4: never recovers; otherwise <= 100/uL for >= 14 d
    length = np.select(
        [c == 0, c == 1, c == 2, c == 3, aplastic],
        [
            0,
            1 + np.floor(6 * u_len),
            7 + np.floor(7 * u_len),
            np.where(option_a, 14 + np.floor(11 * u_len), 7 + np.floor(7 * u_len)),
            days + 10,
        ],
        16 + np.floor(11 * u_len),
    )
    deep = np.select(
        [c == 0, c <= 2, (c == 3) & option_a, c == 3, aplastic],
        [
            0,
            np.where(u_deep2 < 0.35, 1 + np.floor(u_deep * np.minimum(length, 6)), 0),
            np.where(u_deep2 < 0.5, 1 + np.floor(6 * u_deep), 0),
            7 + np.floor(u_deep * (length - 6)),
            3 + np.floor(20 * u_deep),
        ],
        14 + np.floor(u_deep * (length - 13)),
    )
    deep = np.minimum(deep, length)
    nadir_day = np.where(c >= 3, 3 + np.floor(5 * u()), 3 + np.floor(8 * u()))
    u_ts = u()
    start = np.where(
        aplastic, 1 + np.floor(3 * u_ts), np.maximum(1, nadir_day - np.floor(u_ts * np.minimum(length, 5)))
    )
    start = np.where(c == 0, nadir_day + 1, start)
    end = start + length - 1  # last day <= 500/uL of the first stretch (class 0: the nadir day)
    deep_start = np.clip(nadir_day - np.floor(u() * deep), start, end - deep + 1)
    a_day0 = np.maximum(anc0 / 1000 * (0.45 + 0.55 * u()), 0.7)
    a_pre = np.where(c == 0, 0.55 + 0.45 * u(), 0.55 + 0.35 * u())  # class 0: the nadir, above 500/uL
    pre_end = np.where(c == 0, nadir_day, start - 1)
    frac = np.divide(dd, pre_end[:, None], out=np.zeros((n, days)), where=pre_end[:, None] > 0)
    pre = np.exp(np.log(a_day0)[:, None] + np.clip(frac, 0, 1) * (np.log(a_pre) - np.log(a_day0))[:, None])
    w0 = daily[..., 0]
    shallow = np.exp(np.log(0.13) + (np.log(0.47) - np.log(0.13)) * w0)
    deep_value = 0.02 + 0.07 * w0
    blip = (length >= 7) & ~aplastic & (u() < 0.25)
    blip_start = start + 2 + np.floor(u() * (length - 4))
    blip_len = 1 + (u() < 0.4)
    r_first = np.where(c == 0, a_pre + 0.05, 0.0) + 0.55 + 0.35 * u()
    recovery_days = 3 + np.floor(8 * u())
    plateau = np.where(u() < 0.12, 0.8 + 0.9 * u(), np.clip(np.exp(np.log(3.0) + 0.45 * z()), 0.7, 9.0))
    first_up = np.where(c == 0, nadir_day + 1, end + 1)
    post = _piecewise(
        d,
        np.stack([first_up, first_up + recovery_days], 1),
        np.stack([np.log(r_first), np.log(np.maximum(plateau, r_first))], 1),
    )
    noise = _normal(daily[..., 1], daily[..., 2])
    post = np.maximum(np.exp(post + 0.1 * noise), 0.55)
    in_stretch = (dd >= start[:, None]) & (dd <= end[:, None])
    in_deep = (dd >= deep_start[:, None]) & (dd < (deep_start + deep)[:, None])
    in_blip = blip[:, None] & (dd >= blip_start[:, None]) & (dd < (blip_start + blip_len)[:, None]) & ~in_deep
    anc = np.where(dd <= pre_end[:, None], np.maximum(pre, 0.52), post)
    anc = np.where(in_stretch, np.where(in_deep, deep_value, shallow), anc)
    anc = np.where(in_blip, 0.55 + 0.4 * w0, anc)
    # biphasic: a second dip <= 500/uL after a stable recovery (>= 3 days above), from day 13
    biphasic = (u() < 0.18) & ~aplastic & (end <= 18)
    dip_start = np.maximum(end + 4, 13) + np.floor(5 * u())
    dip_len = 2 + np.floor(6 * u())
    in_dip = biphasic[:, None] & (dd >= dip_start[:, None]) & (dd < (dip_start + dip_len)[:, None])
    anc = np.where(in_dip, 0.2 + 0.28 * w0, anc)
    # the nadir day (3-10) holds the lowest count: 10/uL within <= 100/uL days, else 120/uL
    anc = np.where((c > 0)[:, None] & (dd == nadir_day[:, None]), np.where(in_deep, 0.01, 0.12), anc)
    anc_ul = 10 * np.maximum(np.rint(anc * 100), 1)

    # G-CSF: therapeutic from day 14-16 while still neutropenic, or prophylactic from day 2 if high risk
    therapeutic = (start <= 14) & (end >= 14) & (u() < 0.65)
    g_from = 14 + np.floor(3 * u())
    prophylactic = high & (u() < 0.3)
    g_csf = (therapeutic[:, None] & (dd >= g_from[:, None]) & (dd <= (end + 1)[:, None])) | (
        prophylactic[:, None] & (dd >= 2) & (dd <= (nadir_day + 3)[:, None])
    )
    g_per_kg = (child > 0) | (u() < 0.3)
    g_dose = np.where(g_per_kg, 5, np.where(weight >= 70, 480, 300))

    # ---------------------------------------------------------------- platelets
    p_nadir_day = 6 + np.floor(9 * u())
    p_fall = np.exp(np.log(0.08) + (np.log(0.6) - np.log(0.08)) * u()) * np.where(c >= 3, 0.35, 1.0)
    p_day0 = plt0 * (0.75 + 0.25 * u())
    slow = ((c >= 2) & (u() < 0.25)) | (u() < 0.07)
    p_plateau = plt0 * np.where(slow, 0.12 + 0.35 * u(), 0.65 + 0.6 * u())
    p_rec = p_nadir_day + 6 + np.floor(10 * u())
    big = np.full(n, 1e6)
    plt_curve = _piecewise(
        d,
        np.stack([np.zeros(n), p_nadir_day, p_rec, big], 1),
        np.log(np.stack([p_day0, np.maximum(plt0 * p_fall, 3), p_plateau, p_plateau], 1)),
    )
    plt = np.clip(np.rint(np.exp(plt_curve + 0.1 * (2 * daily[..., 3] - 1))), 2, 900)
    plt_tx = (plt < 10) | ((plt < 20) & (daily[..., 7] < 0.5))
    bump = np.zeros_like(plt)
    bump[:, 1:] = plt_tx[:, :-1] * np.rint(15 + 20 * daily[:, 1:, 8])
    plt = plt + bump

    # ---------------------------------------------------------------- hemoglobin (red cells transfused < 7.5-8)
    h_nadir_day = 7 + np.floor(12 * u())
    h_drop = 1.0 + 2.5 * u() + 0.4 * (c >= 3)
    h_end = hgb0 / 10 - h_drop * (0.5 * u()) + 0.5 + 0.5 * (c <= 1)
    hgb_curve = _piecewise(
        d,
        np.stack([np.zeros(n), h_nadir_day, np.full(n, 29.0), big], 1),
        np.stack([hgb0 / 10 * 0.97, hgb0 / 10 - h_drop, h_end, h_end], 1),
    )
    hgb = np.zeros((n, days))
    rbc_units = np.zeros((n, days))
    boost = np.zeros(n)
    for j in range(days):
        v = np.rint(np.clip(hgb_curve[:, j] + 0.25 * (2 * daily[:, j, 4] - 1) + boost, 5.0, 17.5) * 10)
        hgb[:, j] = v
        given = (v < 75) | ((v < 80) & (daily[:, j, 10] < 0.4))
        rbc_units[:, j] = given * (1 + (daily[:, j, 10] > 0.75))
        boost = boost + rbc_units[:, j] * 1.0

    # ---------------------------------------------------------------- lymphocytes and WBC
    alc_peak = 0.3 + 2.5 * u()
    alc_day = 4 + np.floor(6 * u())
    alc = 0.03 + 0.1 * daily[..., 5] + alc_peak[:, None] * _bump(dd - 4, (alc_day - 3)[:, None]) + 0.3 * dd / 30
    alc100 = np.maximum(np.rint(alc * 100), 1)
    mono100 = np.rint((0.05 + 0.12 * anc_ul / 1000 * (0.5 + daily[..., 6])) * 100)
    wbc100 = anc_ul / 10 + alc100 + mono100

    # ---------------------------------------------------------------- CAR-T levels
    k = len(CAR_T_DAYS)
    sample_day = np.array(CAR_T_DAYS, dtype=np.float64)
    s_minute = sample_day[None, :] * 1440 + 480 + np.floor(120 * np.stack([u() for _ in range(k)], 1))
    s_t = s_minute / 1440
    median = np.array([m for m, _ in _CART_PEAK])[prod]
    cmax = np.clip(np.exp(np.log(median) + 1.1 * z() + 0.35 * (crs - 1.5)), 60, 900000)
    peak_at = 2 + _pick(u(), np.array([w for _, w in _CART_PEAK])[prod])  # index of the day 7, 10 or 14 sample
    no_expansion = u() < 0.02
    k_up, k_a, f = 0.5 + 0.6 * u(), 0.25 + 0.35 * u(), 0.85 + 0.13 * u()
    k_b = np.where(u() < 0.2, 0.3 + 0.25 * u(), 0.01 + 0.07 * u())  # ~20 % lose their CAR-T cells
    tp = np.take_along_axis(s_t, peak_at[:, None], 1)
    dt = s_t - tp
    level = np.where(
        dt < 0,
        cmax[:, None] * np.exp(k_up[:, None] * dt),
        cmax[:, None] * (f[:, None] * np.exp(-k_a[:, None] * dt) + (1 - f[:, None]) * np.exp(-k_b[:, None] * dt)),
    )
    level_noise = np.exp(0.15 * np.stack([z() for _ in range(k)], 1))
    is_peak = np.arange(k)[None, :] == peak_at[:, None]
    level = np.where(is_peak, cmax[:, None], np.minimum(level * level_noise, 0.92 * cmax[:, None]))
    level = np.rint(level)
    present = sample_day < days
    quant = (level >= CAR_T_LLOQ) & ~no_expansion[:, None] & present[None, :]
    masked = np.where(quant, level, -1.0)
    c_max = masked.max(axis=1)
    t_max = np.take_along_axis(s_t, masked.argmax(axis=1)[:, None], 1)[:, 0]  # first occurrence of the max
    has_level = c_max > 0

    # ---------------------------------------------------------------- labels
    labels: dict[str, np.ndarray] = {"car_hematotox": hematotox}
    last = days - 1
    if last + _CARRY_DAYS >= _EARLY_END:
        # the last count is carried to day 30 when follow-up ends earlier (the engine's edge rule)
        cols = np.minimum(np.arange(max(days, _EARLY_END + 1)), last)
        grade, d500, d100 = early_icaht_from_daily(anc_ul[:, cols])
        labels.update(icaht_early_grade=grade, days_anc_le_500=d500, days_anc_le_100=d100)
    else:
        labels.update(icaht_early_grade=None, days_anc_le_500=None, days_anc_le_100=None)
    landmark = 28 if last >= 28 else (last if last >= 25 else None)
    if landmark is not None:
        low = (
            (anc_ul[:, landmark] < _PHT_LLN["anc"]).astype(np.int64)
            + (plt[:, landmark] < _PHT_LLN["plt"])
            + (hgb[:, landmark] < _PHT_LLN["hgb"])
        )
        labels.update(pht=low > 0, pht_lineage_count=low)
    else:
        labels.update(pht=None, pht_lineage_count=None)
    labels.update(car_t_cmax=np.where(has_level, c_max, np.nan), car_t_tmax_day=np.where(has_level, t_max, np.nan))

    # ---------------------------------------------------------------- rows
    ul_style = u() < 0.25  # counts per uL (WBC, PLT in 10*3/uL), otherwise 10*9/L
    hgb_gl = u() < 0.25
    rows = _RowParts(n)
    add = rows.add
    every = np.ones(n, dtype=bool)
    u_cnt = np.where(ul_style, _U["/uL"], _U["10*9/L"])
    u_k = np.where(ul_style, _U["10*3/uL"], _U["10*9/L"])
    add(every, ld_minute, "lymphodepletion", np.full(n, 4 * _SEG + _T["Flu/Cy"]), 0)
    add(every, panel_minute, "anc", np.where(ul_style, anc0, 2 * _SEG + anc0 // 10), u_cnt)
    add(every, panel_minute, "plt", plt0, u_k)
    add(every, panel_minute, "hgb", np.where(hgb_gl, hgb0, _SEG + hgb0), np.where(hgb_gl, _U["g/L"], _U["g/dL"]))
    add(
        every,
        panel_minute,
        "crp",
        np.where(crp_mgdl > 0, 2 * _SEG + crp0, _SEG + crp0),
        np.where(crp_mgdl > 0, _U["mg/dL"], _U["mg/L"]),
    )
    add(every, panel_minute, "ferritin", fer0, _U["ng/mL"])
    add(every, panel_minute, "ldh", ldh0, _U["U/L"])
    add(
        every,
        panel_minute,
        "creatinine",
        np.where(crea_umol, np.rint(crea0 / 100 * 88.42), 2 * _SEG + crea0),
        np.where(crea_umol, _U["umol/L"], _U["mg/dL"]),
    )
    cbc_minute = dd * 1440 + 360 + np.floor(60 * daily[..., 9])
    all_days = np.ones((n, days), dtype=bool)
    ul2 = ul_style[:, None]
    add(all_days, cbc_minute, "wbc", 2 * _SEG + wbc100, u_k)
    add(all_days, cbc_minute, "anc", np.where(ul2, anc_ul, 2 * _SEG + anc_ul // 10), u_cnt)
    add(all_days, cbc_minute, "alc", np.where(ul2, alc100 * 10, 2 * _SEG + alc100), u_cnt)
    add(all_days, cbc_minute, "plt", plt, u_k)
    add(
        all_days, cbc_minute, "hgb", np.where(hgb_gl[:, None], hgb, _SEG + hgb), np.where(hgb_gl, _U["g/L"], _U["g/dL"])
    )
    add(
        g_csf,
        dd * 1440 + 600 + np.floor(60 * daily[..., 9]),
        "g_csf",
        g_dose,
        np.where(g_per_kg, _U["ug/kg"], _U["ug"]),
    )
    add(
        plt_tx,
        dd * 1440 + 780 + np.floor(120 * daily[..., 11]),
        "platelet_transfusion",
        np.ones((n, days)),
        _U["{unit}"],
    )
    add(rbc_units > 0, dd * 1440 + 900 + np.floor(120 * daily[..., 11]), "rbc_transfusion", rbc_units, _U["{unit}"])
    written = np.broadcast_to(present[None, :], (n, k))
    blq_code = 4 * _SEG + _T["<5"]
    add(written, s_minute, "car_t_copies", np.where(quant, level, blq_code), _U["{copies}/ug"])
    return rows.block(), labels, c


# ---------------------------------------------------------------------------------------------- outcomes
_O_SCALARS = 48  # uniforms per patient for the disease course and outcome plan (not all are used)
_NEVER = 10**6  # the day of an event that does not happen
_FOLLOW_UP_START = 30  # progression, next therapy, death and last contact come after this day and after the course
_ASSESSMENT_DAYS = (90, 180, 365, 545, 730)  # response assessments after the day-28 one, each +/- 7 days
_MIN_FOLLOW_UP, _MAX_FOLLOW_UP = 152, 700  # administrative censoring: days after the follow-up start (~6-24 months)


@dataclass(frozen=True)
class _Efficacy:
    """The disease course after CAR-T for one disease and product (approximate; sources in the module docstring).

    Times are lognormal (sigma 0.7 to progression, 0.8 after it); days to progression count from the follow-up
    start (day 30)."""

    best: tuple[float, float, float, float]  # best response weights CR, PR, SD, PD (B-ALL: CR and NR, first and last)
    cr_at_day28: float  # share of complete responders already in CR at the day-28 assessment (the others: PR then)
    progression: tuple[float, float, float]  # probability of progression after a best response CR, PR, SD
    days_to_progression: tuple[float, float, float]  # median, after CR, PR, SD (B-ALL has no PR or SD)
    days_after_progression: float  # median survival after progression
    family: int  # 0 lymphoma, 1 B-ALL, 2 myeloma: which response values, progression and next therapies are written


_LYMPHOMA, _ALL, _MYELOMA = range(3)
_LBCL = dict(cr_at_day28=0.7, progression=(0.30, 0.85, 0.95), days_to_progression=(150, 75, 50))
_EFFICACY: dict[str, _Efficacy] = {
    "LBCL axi-cel": _Efficacy((0.58, 0.24, 0.08, 0.10), **_LBCL, days_after_progression=150, family=_LYMPHOMA),
    "LBCL tisa-cel": _Efficacy((0.40, 0.12, 0.16, 0.32), **_LBCL, days_after_progression=150, family=_LYMPHOMA),
    "LBCL liso-cel": _Efficacy((0.53, 0.20, 0.10, 0.17), **_LBCL, days_after_progression=150, family=_LYMPHOMA),
    "FL": _Efficacy((0.75, 0.17, 0.05, 0.03), 0.75, (0.15, 0.60, 0.90), (300, 180, 90), 500, _LYMPHOMA),
    "MCL brexu-cel": _Efficacy((0.67, 0.26, 0.03, 0.04), 0.6, (0.30, 0.75, 0.95), (240, 120, 60), 200, _LYMPHOMA),
    "B-ALL tisa-cel": _Efficacy((0.82, 0.0, 0.0, 0.18), 1.0, (0.40, 0.0, 0.0), (180, 1, 1), 180, _ALL),
    "B-ALL brexu-cel": _Efficacy((0.71, 0.0, 0.0, 0.29), 1.0, (0.45, 0.0, 0.0), (200, 1, 1), 150, _ALL),
    "MM ide-cel": _Efficacy((0.33, 0.40, 0.17, 0.10), 0.3, (0.60, 0.90, 0.95), (450, 200, 60), 360, _MYELOMA),
    "MM cilta-cel": _Efficacy((0.67, 0.30, 0.02, 0.01), 0.2, (0.35, 0.70, 0.95), (500, 300, 60), 400, _MYELOMA),
}
_EFFICACY_GROUPS = tuple(_EFFICACY)
_ALL_CR_KINDS = (0.85, 0.10, 0.05)  # B-ALL complete remissions: MRD_negative_CR, CRi, MRD_positive_CR
# per family: weights of the next therapies (_NEXT_THERAPIES order) after progression
_NEXT_THERAPY_WEIGHTS = ((0.5, 0.25, 0.25, 0.0), (0.2, 0.0, 0.4, 0.4), (0.6, 0.1, 0.3, 0.0))
_P_NEXT_THERAPY = 0.7
_HEMATOTOX_PROGRESSION = 1.3  # high CAR-HEMATOTOX: the probability of staying progression-free to this power
_NRM = 0.05  # probability of a non-relapse death, multiplied by the factors below when they apply
_NRM_SEVERE_ICAHT = 2.5  # early ICAHT grade >= 3
_NRM_SEVERE_TOXICITY = 1.5  # CRS or ICANS grade >= 3
_NRM_HEMATOTOX = 1.3  # high CAR-HEMATOTOX
# Outcome label columns from _outcomes, in LABEL_SCHEMA order.
OUTCOME_LABELS = (
    "response_day28",
    "os_days",
    "os_event",
    "pfs_days",
    "pfs_event",
    "relapse_nrm_days",
    "relapse_nrm_status",
)


def _efficacy_group(product: str, disease: str) -> int:
    """Index into _EFFICACY_GROUPS: large B-cell lymphomas by product, FL alone, the others by disease and product."""
    if disease in ("DLBCL", "HGBL", "PMBCL"):
        name = f"LBCL {product}"
    elif disease == "FL":
        name = "FL"
    else:
        name = f"{disease} {product}"
    return _EFFICACY_GROUPS.index(name)


def _outcomes(
    acc: _Acc, days: int, hema: dict[str, np.ndarray | None], planned_icaht: np.ndarray
) -> tuple[_Block, dict[str, np.ndarray]]:
    """Response assessments, progression, next therapy, death and last contact for a chunk of patients at once;
    returns the rows and the outcome labels (under the definitions of ``tocsin cohort derive``)."""
    n = len(acc.o_context)
    group, crs, icans = np.asarray(acc.o_context, dtype=np.int64).reshape(n, 3).T
    u = _Columns(np.stack(acc.o_uniforms) if n else np.zeros((0, _O_SCALARS)))
    table = [_EFFICACY[name] for name in _EFFICACY_GROUPS]

    def per_group(field: str) -> np.ndarray:
        return np.array([getattr(e, field) for e in table], dtype=np.float64)[group]

    family = per_group("family").astype(np.int64)
    start = max(days, _FOLLOW_UP_START)  # follow-up events lie on later days: they never cut the course short
    hematotox_high = np.asarray(hema["car_hematotox"]) >= 2
    icaht = hema["icaht_early_grade"]
    severe_icaht = (planned_icaht if icaht is None else icaht) >= 3  # the plan when the course is too short to grade

    # ---------------------------------------------------------------- best response, day-28 assessment
    best = _pick(u(), per_group("best"))  # 0 CR, 1 PR, 2 SD, 3 PD (B-ALL: NR)
    cr_by_day28 = u() < per_group("cr_at_day28")
    all_cr_kind = _pick(u(), np.broadcast_to(np.array(_ALL_CR_KINDS), (n, len(_ALL_CR_KINDS))))
    day28 = u.integer(26, 30)
    minute28 = day28 * 1440 + 540 + np.floor(420 * u())
    # index into _RESPONSES: lymphoma and myeloma CR, PR, SD, PD; B-ALL the kind of complete remission or NR
    later_value = np.where(family == _ALL, np.where(best == 0, 4 + all_cr_kind, 7), best)
    value28 = np.where((best == 0) & ~cr_by_day28, 1, later_value)  # a CR that deepens later is a PR on day 28

    # ---------------------------------------------------------------- progression
    known = np.minimum(best, 2)
    p_progress = np.take_along_axis(per_group("progression").reshape(n, 3), known[:, None], 1)[:, 0]
    progression_free = (1 - p_progress) ** np.where(hematotox_high, _HEMATOTOX_PROGRESSION, 1.0)
    progresses = u() < 1 - progression_free
    median_ttp = np.take_along_axis(per_group("days_to_progression").reshape(n, 3), known[:, None], 1)[:, 0]
    ttp = np.ceil(median_ttp * np.exp(0.7 * u.normal()))
    refractory = best == 3
    pd_day28 = refractory & (family != _ALL)  # documented by the day-28 response PD itself
    treatment_failure = refractory & (family == _ALL)  # NR: a progression row soon after (docs/cohort.md, PFS)
    progression_day = np.select(
        [pd_day28, treatment_failure, progresses], [day28, start + u.integer(1, 21), start + ttp], _NEVER
    )

    # ---------------------------------------------------------------- death, next therapy, censoring
    severe_toxicity = (crs >= 3) | (icans >= 3)
    p_nrm = (
        _NRM
        * np.where(severe_icaht, _NRM_SEVERE_ICAHT, 1.0)
        * np.where(severe_toxicity, _NRM_SEVERE_TOXICITY, 1.0)
        * np.where(hematotox_high, _NRM_HEMATOTOX, 1.0)
    )
    nrm = u() < p_nrm
    nrm_mean_days = np.where(severe_icaht, 60.0, 120.0)  # infections after severe neutropenia come earlier
    nrm_day = np.where(nrm, start + 1 + np.floor(-nrm_mean_days * np.log1p(-u())), _NEVER)
    nrm_first = nrm_day < progression_day
    survival = np.ceil(per_group("days_after_progression") * np.exp(0.8 * u.normal()))
    progression_death = np.where(progression_day < _NEVER, np.maximum(progression_day, start) + 7 + survival, _NEVER)
    death_day = np.where(nrm_first, nrm_day, progression_death)
    infection = u() < np.where(severe_icaht, 0.8, 0.6)
    cause = np.where(nrm_first, np.where(infection, 1, 2), 0)  # index into _DEATH_CAUSES
    cut_day = start + u.integer(_MIN_FOLLOW_UP, _MAX_FOLLOW_UP)  # the data cut: last contact when alive
    died = death_day < cut_day
    progressed = progression_day < np.minimum(death_day, cut_day)
    progression_row = progressed & ~pd_day28
    therapy_day = np.maximum(progression_day, start) + u.integer(5, 35)
    therapy = progressed & (u() < _P_NEXT_THERAPY) & (therapy_day < np.minimum(death_day, cut_day))
    therapy_kind = _pick(u(), np.array(_NEXT_THERAPY_WEIGHTS)[family])
    k = len(_ASSESSMENT_DAYS)
    assessment_day = np.array(_ASSESSMENT_DAYS)[None, :] + np.stack([u.integer(-7, 7) for _ in range(k)], 1)
    assessed = assessment_day < np.minimum.reduce([progression_day, death_day, cut_day])[:, None]

    minute_assessed = assessment_day * 1440 + 540 + np.floor(420 * np.stack([u() for _ in range(k)], 1))
    minute_progression = progression_day * 1440 + 540 + np.floor(480 * u())
    minute_therapy = therapy_day * 1440 + 480 + np.floor(240 * u())
    minute_death = death_day * 1440 + np.floor(1440 * u())
    minute_cut = cut_day * 1440 + 540 + np.floor(480 * u())

    # ---------------------------------------------------------------- labels (tocsin cohort derive's definitions)
    t28, t_death, t_cut = minute28 / 1440.0, minute_death / 1440.0, minute_cut / 1440.0
    t_progression = np.where(pd_day28, t28, minute_progression / 1440.0)
    pfs_days = np.where(progressed, t_progression, np.where(died, t_death, t_cut))
    labels = {
        "response_day28": np.array(_RESPONSES)[value28],
        "os_days": np.where(died, t_death, t_cut),
        "os_event": died,
        "pfs_days": pfs_days,
        "pfs_event": progressed | died,
        # progression always precedes a death from it, so relapse/NRM follows PFS: relapse 1, other deaths 2
        "relapse_nrm_days": pfs_days,
        "relapse_nrm_status": np.where(progressed, 1, np.where(died, 2, 0)),
    }

    # ---------------------------------------------------------------- rows
    rows = _RowParts(n)
    text = 4 * _SEG
    rows.add(np.ones(n, dtype=bool), minute28, "response", text + _T["CR"] + value28, 0)
    rows.add(assessed, minute_assessed, "response", text + _T["CR"] + later_value, 0)
    method = text + _T[_PROGRESSION_METHODS[0]] + family  # PET-CT, bone marrow, M-protein
    rows.add(progression_row, minute_progression, "progression", method, 0)
    rows.add(therapy, minute_therapy, "next_therapy", text + _T[_NEXT_THERAPIES[0]] + therapy_kind, 0)
    rows.add(died, minute_death, "death", text + _T[_DEATH_CAUSES[0]] + cause, 0)
    rows.add(~died, minute_cut, "last_contact", np.full(n, text + _T["alive"]), 0)
    return rows.block(), labels


# ---------------------------------------------------------------------------------------------- CAR-T dose
_C_SCALARS = 4  # uniforms per patient for the infused dose (not all are used)


@dataclass(frozen=True)
class _Dose:
    """A product's label dose: per kg (10^6 CAR+ cells/kg, capped at ``cap`` x 10^6 cells) or flat (10^6 cells,
    written in ``unit``); the dose given is ``median`` x exp(``sigma`` x N(0, 1)) clipped to [``lo``, ``hi``]."""

    per_kg: bool
    median: float
    sigma: float
    lo: float
    hi: float
    cap: float | None = None
    unit: str = "10*6"


# Label doses (US prescribing information): axi-cel 2 x 10^6/kg, at most 2 x 10^8; brexu-cel 2 x 10^6/kg for MCL and
# 1 x 10^6/kg for B-ALL, at most 2 x 10^8 / 1 x 10^8; cilta-cel 0.5-1.0 x 10^6/kg, at most 1 x 10^8; tisa-cel
# 0.2-5.0 x 10^6/kg up to 50 kg and 0.1-2.5 x 10^8 above (B-ALL), 0.6-6.0 x 10^8 (lymphoma; written in 10*8);
# liso-cel 100 x 10^6 (44-120); ide-cel 450 x 10^6 (300-510).
_DOSES = (
    _Dose(True, 2.0, 0.06, 1.6, 2.4, cap=200.0),  # axi-cel
    _Dose(True, 3.0, 0.45, 0.2, 5.0),  # tisa-cel, B-ALL, up to 50 kg
    _Dose(False, 120.0, 0.45, 10.0, 250.0),  # tisa-cel, B-ALL, above 50 kg
    _Dose(False, 300.0, 0.4, 60.0, 600.0, unit="10*8"),  # tisa-cel, lymphoma
    _Dose(False, 100.0, 0.08, 44.0, 120.0),  # liso-cel
    _Dose(True, 2.0, 0.06, 1.6, 2.4, cap=200.0),  # brexu-cel, MCL
    _Dose(True, 1.0, 0.06, 0.8, 1.2, cap=100.0),  # brexu-cel, B-ALL
    _Dose(True, 0.72, 0.15, 0.5, 1.0, cap=100.0),  # cilta-cel
    _Dose(False, 450.0, 0.07, 300.0, 510.0),  # ide-cel
)


def _dose_group(product: str, disease: str, weight: float) -> int:
    """Index into _DOSES."""
    if product == "tisa-cel":
        return (1 if weight <= 50 else 2) if disease == "B-ALL" else 3
    if product == "brexu-cel":
        return 5 if disease == "MCL" else 6
    return {"axi-cel": 0, "liso-cel": 4, "cilta-cel": 7, "ide-cel": 8}[product]


def _cell_dose(acc: _Acc) -> tuple[_Block, dict[str, np.ndarray]]:
    """One CAR-T dose row per patient at the infusion (day 0, minute 0) for a chunk of patients at once, per kg or
    total as the product's label gives it; returns the rows and the label ``car_t_dose_per_kg`` (a total dose divided
    by the written weight, as ``tocsin cohort derive`` computes it)."""
    n = len(acc.c_context)
    context = np.asarray(acc.c_context, dtype=np.float64).reshape(n, 3)
    group, weight = context[:, 0].astype(np.int64), context[:, 1]
    u = _Columns(np.stack(acc.c_uniforms) if n else np.zeros((0, _C_SCALARS)))

    def per_group(field: str) -> np.ndarray:
        return np.array([getattr(d, field) for d in _DOSES], dtype=np.float64)[group]

    per_kg = np.array([d.per_kg for d in _DOSES], dtype=bool)[group]
    in_10e8 = np.array([d.unit == "10*8" for d in _DOSES], dtype=bool)[group]
    cap = np.array([np.inf if d.cap is None else d.cap for d in _DOSES], dtype=np.float64)[group]
    dose = np.clip(per_group("median") * np.exp(per_group("sigma") * u.normal()), per_group("lo"), per_group("hi"))
    # written values: per kg with 2 decimals (the cap of a flat maximum lowers it for heavy patients), totals in 10^6
    # with 1 decimal, in 10^8 with 2 decimals
    per_kg_value = np.floor(np.minimum(dose, cap / weight) * 100) / 100
    total_value = np.where(in_10e8, np.round(dose / 100, 2), np.round(dose, 1))
    total_10e6 = np.where(in_10e8, total_value * 100, total_value)
    labels = {"car_t_dose_per_kg": np.where(per_kg, per_kg_value, np.round(np.round(total_10e6, 6) / weight, 6))}

    rows = _RowParts(n)
    minute = np.zeros(n)
    rows.add(per_kg, minute, "car_t_dose_per_kg", 2 * _SEG + np.rint(per_kg_value * 100), _U["10*6/kg"])
    total_code = np.where(in_10e8, 2 * _SEG + np.rint(total_value * 100), 1 * _SEG + np.rint(total_value * 10))
    rows.add(~per_kg, minute, "car_t_dose_total", total_code, np.where(in_10e8, _U["10*8"], _U["10*6"]))
    return rows.block(), labels


def _sparse_rows(acc: _Acc) -> _Block:
    num = np.asarray(acc.num, dtype=np.float64)
    dec = np.asarray(acc.dec, dtype=np.int64)
    txt = np.asarray(acc.txt, dtype=np.int64)
    scaled = np.rint(num * np.power(10.0, dec)).astype(np.int64)
    if scaled.size and (scaled.min() < 0 or scaled.max() >= _SEG):
        raise AssertionError("synthetic value out of the encodable range")  # a generator bug
    codes = np.where(txt >= 0, 4 * _SEG + txt, dec * _SEG + scaled).astype(np.uint32)
    return (
        np.asarray(acc.pid, dtype=np.uint32),
        np.asarray(acc.minute, dtype=np.int32),
        np.asarray(acc.item, dtype=np.uint8),
        codes,
        np.asarray(acc.unit, dtype=np.uint8),
    )


def _code_text(c: int) -> str:
    s, v = divmod(c, _SEG)
    if s == 0:
        return str(v)
    if s == 1:
        return repr(round(v / 10, 1))
    if s == 2:
        return repr(round(v / 100, 2))
    if s == 3:
        return repr(round(v / 1000, 3))
    return _TEXTS[c - 4 * _SEG]


class _ValueFormatter:
    """Turns value codes into strings, formatting each distinct value once per cohort.

    The look-up arrays are allocated once and reused for every chunk.
    """

    def __init__(self) -> None:
        self._present = np.zeros(4 * _SEG + len(_TEXTS), dtype=bool)
        self._remap = np.zeros(self._present.size, dtype=np.uint32)
        self._texts: dict[int, str] = {}

    def __call__(self, codes: np.ndarray) -> pl.Series:
        self._present[codes] = True
        uniq = np.flatnonzero(self._present)
        self._present[uniq] = False
        texts = self._texts
        strings = [texts.get(c) or texts.setdefault(c, _code_text(c)) for c in uniq.tolist()]
        self._remap[uniq] = np.arange(uniq.size, dtype=np.uint32)
        return pl.Series(strings, dtype=pl.String).gather(pl.Series(self._remap[codes]))


def _events_frame(
    acc: _Acc, days: int, ids: pl.Series, formatter: _ValueFormatter, extra: list[_Block]
) -> pl.DataFrame:
    """The event rows of one chunk of patients, sorted by patient, minute and item order."""
    blocks = [_vital_rows(acc), _lab_rows(acc, days), _neuro_rows(acc), _sparse_rows(acc), *extra]
    pid = np.concatenate([b[0] for b in blocks])
    minute = np.concatenate([b[1] for b in blocks])
    item = np.concatenate([b[2] for b in blocks])
    # minutes before the infusion (baseline labs) are shifted to keep the key's fields non-negative
    key = (pid.astype(np.int64) << 40) | ((minute.astype(np.int64) + _MINUTE_OFFSET) << 8) | item
    order = np.argsort(key, kind="stable")
    codes = np.concatenate([b[3] for b in blocks])[order]
    unit = np.concatenate([b[4] for b in blocks])[order]
    return pl.DataFrame(
        {
            "patient_id": ids.gather(pl.Series(pid[order])),
            "day": minute[order] / 1440.0,
            "item": pl.Series(_ITEMS, dtype=pl.String).gather(pl.Series(item[order].astype(np.uint32))),
            "value": formatter(codes),
            "unit": pl.Series(_UNITS, dtype=pl.String).gather(pl.Series(unit.astype(np.uint32))),
            "source": pl.Series([SOURCE], dtype=pl.String).gather(pl.Series(np.zeros(pid.size, np.uint32))),
        }
    )


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def _label_column(chunks: list[dict[str, np.ndarray | None]], name: str, n: int) -> pl.Series:
    parts = [c[name] for c in chunks]
    if not parts or any(p is None for p in parts):
        return pl.Series(name, [None] * n, dtype=LABEL_SCHEMA[name])
    values = np.concatenate(parts)  # type: ignore[arg-type]
    series = pl.Series(name, values)
    if series.dtype.is_float():
        series = series.fill_nan(None)
    return series.cast(LABEL_SCHEMA[name])


def generate_cohort(n_patients: int, seed: int, days: int = 30) -> SyntheticCohort:
    """Generate ``n_patients`` synthetic CAR-T courses of ``days`` days after infusion, with their follow-up.

    Deterministic: the same arguments give identical frames. ``days`` must be at least 14 (CRS is
    planned on days 1-7 and resolves at least a day before the end of the course). The follow-up rows
    (response, progression, next therapy, death, last contact) reach 6-24 months. Events are sorted by
    patient, day and a fixed item order.
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 0:
        raise ValueError(f"n_patients must be a non-negative integer, got {n_patients!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < MIN_DAYS:
        raise ValueError(f"days must be an integer >= {MIN_DAYS}, got {days!r}")
    if n_patients >= 1 << 21:
        raise ValueError("n_patients must be below 2,097,152")

    width = max(5, len(str(n_patients)))
    ids = pl.Series([f"SYN{p + 1:0{width}d}" for p in range(n_patients)], dtype=pl.String)
    labels: list[tuple] = []
    hema_labels: list[dict[str, np.ndarray | None]] = []
    outcome_labels: list[dict[str, np.ndarray | None]] = []
    dose_labels: list[dict[str, np.ndarray | None]] = []
    frames: list[pl.DataFrame] = []
    formatter = _ValueFormatter()
    streams = _patient_streams(seed, n_patients)
    bit_generator = np.random.PCG64(0)
    rng = np.random.Generator(bit_generator)
    # Patients are simulated and turned into rows in chunks: the arrays of one chunk stay small enough
    # to be reused by the allocator, and a chunk's rows sorted by (patient, time) are already in their
    # final place, because every chunk holds whole patients.
    for start in range(0, n_patients, _CHUNK):
        stop = min(n_patients, start + _CHUNK)
        acc = _Acc()
        for p in range(start, stop):
            _reseed(bit_generator, streams[p])
            labels.append(_simulate_patient(p - start, rng, days, acc))
        hema_block, hema, planned_icaht = _hematology(acc, days)
        outcome_block, outcome = _outcomes(acc, days, hema, planned_icaht)
        dose_block, dose = _cell_dose(acc)
        hema_labels.append(hema)
        outcome_labels.append(outcome)
        dose_labels.append(dose)
        blocks = [hema_block, outcome_block, dose_block]
        frames.append(_events_frame(acc, days, ids.slice(start, stop - start), formatter, blocks))
    label_frame = pl.DataFrame(
        {
            "patient_id": ids,
            "crs_max_grade": [x[0] for x in labels],
            "crs_onset_day": [x[1] for x in labels],
            "crs_episodes": [x[2] for x in labels],
            "icans_max_grade": [x[3] for x in labels],
            "icans_onset_day": [x[4] for x in labels],
            "age": [x[5] for x in labels],
            "product": [x[6] for x in labels],
            **{name: _label_column(hema_labels, name, n_patients) for name in _HEMA_LABELS},
            **{name: _label_column(outcome_labels, name, n_patients) for name in OUTCOME_LABELS},
            "car_t_dose_per_kg": _label_column(dose_labels, "car_t_dose_per_kg", n_patients),
        },
        schema=LABEL_SCHEMA,
    )
    events = pl.concat(frames, how="vertical", rechunk=False) if frames else _empty_events()
    return SyntheticCohort(events=events, labels=label_frame)


def write_cohort(cohort: SyntheticCohort, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet") -> list[Path]:
    """Write ``events.<fmt>`` and ``labels.<fmt>`` into ``out_dir`` (created if needed).

    Each file is written to a temporary name in the same directory and then renamed, so an interrupted
    write leaves any previous file intact. Returns the two paths (events first).
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in (("events", cohort.events), ("labels", cohort.labels)):
        target = out_dir / f"{name}.{fmt}"
        tmp = out_dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex}.{fmt}.tmp"
        try:
            if fmt == "parquet":
                frame.write_parquet(tmp)
            else:
                frame.write_csv(tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        paths.append(target)
    return paths
