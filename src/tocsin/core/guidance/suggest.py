"""The pack evaluator: ranked suggestions, alerts and unevaluable rules for many (patient, time) queries.

Each rule is one filter over the facts frame (:func:`tocsin.core.guidance.facts.assessment_facts`), so a
thousand queries cost about as much as one. Conditions use three-valued logic: a condition on a missing
fact column, or on a null value, is *unknown*; a rule with a false condition does not fire, a rule whose
conditions are all true fires, and a rule left unknown is reported as ``cannot_evaluate`` with the facts it
needs (DESIGN principle 3: "cannot grade: needs X", never a silent no).

Safety (issue 4, item 8):

* doses come only from :func:`tocsin.core.dosing.dose_for` (cap and label maximum applied; no weight → no mg
  dose, the per-kg dose and "needs weight");
* a dose the repeat limits forbid now is given status ``next_allowed`` (with ``next_allowed_at``) or
  ``limit_reached`` (no further dose), never ``give_now``, and an alert says why;
* an alert rule's ``suppresses`` list removes those drugs' suggestions for the same query (ASCO 2021: no
  tocilizumab for ICANS without CRS);
* every row carries :data:`tocsin.core.dosing.SUPPORTS_JUDGEMENT`.

References: ASCO 2021 (doi:10.1200/JCO.21.01992); NCCN v2.2026 CART-6/CART-9; criteria.md §5.
"""

from __future__ import annotations

from functools import reduce

import polars as pl

from tocsin.core.dosing import SUPPORTS_JUDGEMENT, dose_for
from tocsin.core.guidance.packs import _PLACEHOLDER, Condition, Pack, Rule
from tocsin.drugs import DrugTable, load_drugs

PID = "patient_id"
LIMITS_DTYPE = pl.Struct(
    {
        "doses_given": pl.Int64,
        "doses_last_24h": pl.Int64,
        "doses_left": pl.Int64,
        "max_doses_24h": pl.Int64,
        "max_doses_total": pl.Int64,
        "min_interval_hours": pl.Float64,
        "reason": pl.String,
    }
)
SCHEMA: dict[str, pl.DataType] = {
    PID: pl.String(),
    "at": pl.Float64(),
    "kind": pl.String(),
    "rank": pl.Int64(),
    "id": pl.String(),
    "rule": pl.String(),
    "action": pl.String(),
    "drug": pl.String(),
    "regimen": pl.String(),
    "status": pl.String(),
    "dose_mg": pl.Float64(),
    "per_kg_mg": pl.Float64(),
    "dose_basis": pl.String(),
    "cap_applied": pl.Boolean(),
    "route": pl.String(),
    "frequency": pl.String(),
    "next_allowed_at": pl.Float64(),
    "limits": LIMITS_DTYPE,
    "because": pl.List(pl.String),
    "what_would_change": pl.String(),
    "severity": pl.String(),
    "needs": pl.List(pl.String),
    "pack": pl.String(),
    "pack_version": pl.String(),
    "citation": pl.String(),
    "evidence": pl.String(),
    "tag": pl.String(),
    "source": pl.String(),
    "note": pl.String(),
}
SUGGESTION_COLUMNS = list(SCHEMA)
_KIND_ORDER = {"alert": 0, "suggestion": 1, "cannot_evaluate": 2}


def _fact(facts: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in facts.columns else pl.lit(None)


def _condition(facts: pl.DataFrame, c: Condition) -> pl.Expr:
    """True / false / null (unknown) for each row."""
    x = _fact(facts, c.fact)
    if c.op == "is_true":
        return x.cast(pl.Boolean)
    if c.op == "is_false":
        return ~x.cast(pl.Boolean)
    if c.op == "in":
        # is_in gives false for null; keep unknown unknown.
        return pl.when(x.is_null()).then(None).otherwise(x.is_in(c.value))
    v = pl.lit(c.value)
    return {"==": x == v, "!=": x != v, "<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v}[c.op]


def _shown(facts: pl.DataFrame, name: str) -> pl.Expr:
    """A fact's value as text for `because` (floats to 1 decimal; missing or null → 'unknown')."""
    if name not in facts.columns:
        return pl.lit("unknown (no such fact)")
    x = pl.col(name)
    if facts.schema[name].is_float():
        x = x.round(1)
    return x.cast(pl.String).fill_null("unknown")


def _filled(facts: pl.DataFrame, text: str) -> pl.Expr:
    """A template with its ``{fact}`` placeholders filled from the facts (missing → 'unknown')."""
    names = _PLACEHOLDER.findall(text)
    if not names:
        return pl.lit(text)
    return pl.format(_PLACEHOLDER.sub("{}", text.replace("{}", "")), *(_shown(facts, n) for n in names))


def _because(facts: pl.DataFrame, rule: Rule, conditions: list[Condition]) -> pl.Expr:
    """The rule's template with the facts filled in, then each condition with its value."""
    parts = [_filled(facts, rule.because)]
    parts += [pl.format(f"{c.text()} (is {{}})", _shown(facts, c.fact)) for c in conditions]
    return pl.concat_list(parts)


def _doses(rows: pl.DataFrame, rule: Rule, drugs: DrugTable) -> pl.DataFrame:
    """dose_for once per distinct (weight, age) of the fired rows."""
    pairs = rows.select("weight", "age_years").unique()
    calculated = []
    for weight, age in pairs.iter_rows():
        d = dose_for(rule.drug, weight, age, regimen=rule.regimen, table=drugs)
        calculated.append(
            {
                "weight": weight,
                "age_years": age,
                "dose_status": d.status,
                "dose_mg": d.dose_mg,
                "per_kg_mg": d.per_kg_mg,
                "dose_basis": d.dose_basis,
                "cap_applied": d.cap_applied,
                "route": d.route,
                "frequency": rule.frequency or d.frequency,
                "dose_reason": d.reason,
                "regimen": d.regimen,
            }
        )
    frame = pl.DataFrame(calculated, schema_overrides={"weight": pl.Float64, "age_years": pl.Float64})
    return rows.join(frame, on=["weight", "age_years"], how="left", nulls_equal=True)


def _drug_rows(rows: pl.DataFrame, rule: Rule, drugs: DrugTable) -> pl.DataFrame:
    """Dose, repeat limits and status of a drug rule's fired rows."""
    drug = rule.drug
    assert drug is not None
    rules = drugs.drug(drug).rules()
    out = _doses(rows, rule, drugs)
    known = f"{drug}_allowed_now" in rows.columns
    unknown_reason = (
        f"{drug}: no repeat limits in the sources read"
        if rules.min_interval_hours is None and rules.max_doses_24h is None and rules.max_doses_total is None
        else f"{drug} administrations cannot be read from the course: limits unknown"
    )
    allowed = pl.col(f"{drug}_allowed_now") if known else pl.lit(None, pl.Boolean)
    nxt = pl.col(f"{drug}_next_allowed_at") if known else pl.lit(None, pl.Float64)
    limit = (lambda c: pl.col(c)) if known else (lambda c: pl.lit(None))
    status = (
        pl.when(pl.col("dose_status") == "refused")
        .then(pl.lit("refused"))
        .when(allowed.not_() & nxt.is_null())
        .then(pl.lit("limit_reached"))
        .when(allowed.not_())
        .then(pl.lit("next_allowed"))
        .when(pl.col("dose_status") == "needs_data")
        .then(pl.lit("needs_data"))
        .otherwise(pl.lit("give_now"))
    )
    out = out.with_columns(status.alias("status"))
    return out.with_columns(
        pl.when(pl.col("status") != "refused").then(nxt).alias("next_allowed_at"),
        pl.struct(
            limit(f"{drug}_doses_given").cast(pl.Int64).alias("doses_given"),
            limit(f"{drug}_doses_24h").cast(pl.Int64).alias("doses_last_24h"),
            limit(f"{drug}_doses_left").cast(pl.Int64).alias("doses_left"),
            pl.lit(rules.max_doses_24h, pl.Int64).alias("max_doses_24h"),
            pl.lit(rules.max_doses_total, pl.Int64).alias("max_doses_total"),
            pl.lit(rules.min_interval_hours, pl.Float64).alias("min_interval_hours"),
            (limit(f"{drug}_limit_reason") if known else pl.lit(unknown_reason)).cast(pl.String).alias("reason"),
        ).alias("limits"),
        pl.lit(drug).alias("drug"),
    )


def _drug_alerts(rows: pl.DataFrame) -> pl.DataFrame:
    """What the clinician must see about a dose: not allowed now, no further dose, cap, missing weight."""
    drug, reason = pl.col("drug"), pl.col("limits").struct.field("reason")
    message = (
        pl.when(pl.col("status") == "limit_reached")
        .then(pl.format("{}: no further dose ({})", drug, reason))
        .when(pl.col("status") == "next_allowed")
        .then(pl.format("{} not allowed now: {}", drug, reason))
        .when(pl.col("status") == "refused")
        .then(pl.format("{}: no dose ({})", drug, pl.col("dose_basis")))
        .when(pl.col("status") == "needs_data")
        .then(pl.format("{}: no mg dose ({})", drug, pl.col("dose_basis")))
        .when(pl.col("cap_applied"))
        .then(pl.format("{}: dose cap applied ({})", drug, pl.col("dose_basis")))
    )
    severity = pl.when(pl.col("status").is_in(["give_now"])).then(pl.lit("info")).otherwise(pl.lit("warning"))
    return (
        rows.with_columns(message.alias("action"), severity.alias("severity"))
        .filter(pl.col("action").is_not_null())
        .with_columns(
            pl.lit("alert").alias("kind"),
            pl.format("{}:{}", pl.col("drug"), pl.col("status")).alias("id"),
            pl.lit(None, pl.List(pl.String)).alias("because"),
            pl.lit(None, pl.String).alias("what_would_change"),
        )
    )


def _rule_frames(facts: pl.DataFrame, pack: Pack, rule: Rule, drugs: DrugTable) -> list[pl.DataFrame]:
    conditions = rule.conditions()
    exprs = [_condition(facts, c) for c in conditions]
    mask = reduce(lambda a, b: a & b, exprs) if exprs else pl.lit(True)
    evaluated = facts.with_columns(mask.alias("_fires"))
    identity = {
        "rule": pl.lit(rule.id),
        "id": pl.lit(f"{pack.name}:{rule.id}"),
        "rank": pl.lit(rule.rank, pl.Int64),
        "pack": pl.lit(pack.name),
        "pack_version": pl.lit(pack.version),
        "citation": pl.lit(rule.citation),
        "evidence": pl.lit(rule.evidence),
        "tag": pl.lit(rule.tag),
        "source": pl.lit(rule.source),
        "what_would_change": pl.lit(rule.what_would_change),
    }
    frames = []
    unknown = evaluated.filter(pl.col("_fires").is_null())
    if unknown.height:
        needs = pl.concat_list(
            [pl.when(e.is_null()).then(pl.lit(c.fact)) for c, e in zip(conditions, exprs, strict=True)]
        ).list.drop_nulls()
        frames.append(
            unknown.with_columns(
                **identity,
                kind=pl.lit("cannot_evaluate"),
                needs=needs.list.unique(maintain_order=True),
                action=pl.format("cannot evaluate {}: needs {}", pl.lit(rule.id), needs.list.join(", ")),
                because=_because(unknown, rule, conditions),
            )
        )
    fired = evaluated.filter(pl.col("_fires"))
    if not fired.height:
        return frames
    fired = fired.with_columns(
        **identity,
        kind=pl.lit(rule.kind),
        # A dose the facts compute (seed 003 prednisone mg/day) reads in the action itself for agents not dosed.
        action=_filled(fired, rule.action),
        because=_because(fired, rule, conditions),
        severity=pl.lit(rule.severity if rule.kind == "alert" else None, pl.String),
        suppresses=pl.lit(rule.suppresses, pl.List(pl.String)),
    )
    if rule.drug:
        fired = _drug_rows(fired, rule, drugs)
        frames.append(_drug_alerts(fired).with_columns(rank=pl.lit(0, pl.Int64)))
    elif rule.agent:
        fired = fired.with_columns(
            drug=pl.lit(rule.agent),
            status=pl.lit("consider"),
            frequency=pl.lit(rule.frequency),
            dose_basis=pl.lit(f"no mg dose: {rule.agent} has no dose rules in the drug table (see the rule's source)"),
        )
    elif rule.kind == "suggestion":
        fired = fired.with_columns(status=pl.lit("action"), frequency=pl.lit(rule.frequency))
    frames.insert(0, fired)
    return frames


def suggest(facts: pl.DataFrame, pack: Pack, drugs: DrugTable | None = None) -> pl.DataFrame:
    """Evaluate ``pack`` over the facts: one row per suggestion, alert or unevaluable rule, ranked.

    Parameters
    ----------
    facts : ``patient_id``, ``at`` and fact columns (:func:`~tocsin.core.guidance.facts.assessment_facts`,
        plus any columns other modules add).
    pack : a validated pack (:func:`~tocsin.core.guidance.packs.load_pack`).
    drugs : the drug table (default: the packaged one).

    Returns :data:`SUGGESTION_COLUMNS`, sorted by query (in the facts' order), then alerts, suggestions and
    unevaluable rules, each by rank and pack order. ``kind`` is ``suggestion``, ``alert`` or
    ``cannot_evaluate``; ``status`` of a drug suggestion is ``give_now``, ``next_allowed``,
    ``limit_reached``, ``needs_data`` or ``refused``; ``consider`` for an agent without dose rules and
    ``action`` for a non-drug action. ``at`` and ``next_allowed_at`` are days since infusion.
    """
    drugs = drugs or load_drugs()
    facts = facts.with_columns(pl.col(PID).cast(pl.String)).with_row_index("_q")
    # dose_for joins on (weight, age): one dtype whatever the caller's frame inferred.
    facts = facts.with_columns(
        (pl.col(n) if n in facts.columns else pl.lit(None)).cast(pl.Float64).alias(n) for n in ("weight", "age_years")
    )
    frames: list[pl.DataFrame] = []
    for order, rule in enumerate(pack.rules):
        for frame in _rule_frames(facts, pack, rule, drugs):
            frames.append(frame.with_columns(pl.lit(order, pl.Int64).alias("_order")))
    keep = [*SCHEMA, "_q", "_order", "suppresses"]
    if not frames:
        return pl.DataFrame(schema=SCHEMA)
    out = pl.concat([f.select([c for c in keep if c in f.columns]) for f in frames], how="diagonal_relaxed")
    for name, dtype in SCHEMA.items():
        if name not in out.columns:
            out = out.with_columns(pl.lit(None, dtype).alias(name))
    if "suppresses" in out.columns:
        banned = (
            out.filter(pl.col("kind") == "alert")
            .select("_q", pl.col("suppresses").alias("drug"))
            .explode("drug")
            .drop_nulls()
            .unique()
            .with_columns(pl.lit(True).alias("_banned"))
        )
        # The suppressed drug's suggestions and its dose alerts go; the rule's own alert (no drug) stays.
        out = out.join(banned, on=["_q", "drug"], how="left").filter(~pl.col("_banned").fill_null(False))
    out = out.with_columns(
        pl.col("kind").replace_strict(_KIND_ORDER, return_dtype=pl.Int64).alias("_kind"),
        pl.lit(SUPPORTS_JUDGEMENT).alias("note"),
    ).unique(subset=["_q", "kind", "action", "drug"], keep="first", maintain_order=True)
    out = out.sort("_q", "_kind", "rank", "_order", maintain_order=True)
    return out.select([pl.col(n).cast(d) for n, d in SCHEMA.items()])
