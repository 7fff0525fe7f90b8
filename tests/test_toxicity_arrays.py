"""The array pieces of the CRS/ICANS timelines: gathers, forward fills, frames, episodes and summaries, at their
edges (empty batch, a patient without rows, one row, missing values)."""

import numpy as np
import polars as pl
from tocsin.config import GradingConfig
from tocsin.core.engine import grade_crs, grade_events, grade_icans
from tocsin.core.episodes import episodes_and_summary, mark_stretches
from tocsin.core.evidence import combination_texts, first_label
from tocsin.core.arrays import gather_rows
from tocsin.core.timeline import (
    Assessments,
    NullableInt,
    Text,
    frame_of,
    labels,
    latest_valid,
    null_texts,
    text_codes,
    text_positions,
)
from tocsin.vocabulary import load_vocabulary


def test_latest_valid_restarts_at_each_patient() -> None:
    first = np.array([True, False, False, True, False])
    found = latest_valid({"a": np.array([False, True, False, False, True]), "b": np.array([True] + [False] * 4)}, first)
    assert found["a"].tolist() == [-1, 1, 1, -1, 4]
    assert found["b"].tolist() == [0, 0, 0, -1, -1]
    assert latest_valid({"a": np.zeros(0, np.bool_)}, np.zeros(0, np.bool_))["a"].shape == (0,)
    assert latest_valid({}, first) == {}


def test_frame_of_types_nulls_and_text() -> None:
    source = pl.Series(["x", None, "z"])
    frame = frame_of(
        {
            "text": Text(source, np.array([2, -1, 1])),
            "label": labels(["a", "b"], np.array([1, 0, -1])),
            "grade": NullableInt(np.array([3, -1, 0], dtype=np.int8)),
            "days": NullableInt(np.array([-1, 2, 0], dtype=np.int32), pl.Int32),
            "value": np.array([np.nan, 1.0, 2.0]),
            "flag": np.array([True, False, True]),
        }
    )
    assert frame.schema == pl.Schema(
        {"text": pl.Utf8, "label": pl.Utf8, "grade": pl.Int8, "days": pl.Int32, "value": pl.Float64, "flag": pl.Boolean}
    )
    assert frame.rows() == [
        ("z", "b", 3, None, None, True), (None, "a", None, 2, 1.0, False), (None, None, 0, 0, 2.0, True)
    ]
    empty = frame_of({"text": Text(source, np.zeros(0, np.int64)), "value": np.zeros(0)})
    assert empty.height == 0 and empty.schema == pl.Schema({"text": pl.Utf8, "value": pl.Float64})



def test_frame_of_texts_of_one_source_and_integers_without_null() -> None:
    # Texts of one source are gathered together, whatever the order of the columns between them.
    source, other = pl.Series(["x", "y"]), pl.Series(["p", "q"], dtype=pl.Categorical)
    frame = frame_of(
        {
            "a": Text(source, np.array([1, -1])),
            "b": Text(other, np.array([0, 1])),
            "n": NullableInt(np.array([4, 5], dtype=np.int64), pl.Int32),
            "c": Text(source, np.array([0, 1])),
        }
    )
    assert frame.columns == ["a", "b", "n", "c"] and frame.dtypes == [pl.Utf8, pl.Categorical, pl.Int32, pl.Utf8]
    assert frame.rows() == [("y", "p", 4, "x"), (None, "q", 5, "y")]
    flags = frame_of({"flag": NullableInt(np.array([1, -1, 0]), pl.Boolean)}).get_column("flag")
    assert flags.dtype == pl.Boolean and flags.to_list() == [True, None, False]


def _timeline(patients: list[str], t: list[float], grades: list[int]) -> Assessments:
    ids = pl.Series(patients, dtype=pl.Categorical)
    first = np.ones(len(patients), dtype=np.bool_)
    first[1:] = np.array(patients[1:]) != np.array(patients[:-1])
    state = Assessments(Text(ids, np.arange(len(patients))), np.zeros(len(patients), np.int64), first, np.array(t))
    grade = np.array(grades, dtype=np.int8)
    state.add(grade=NullableInt(grade))
    mark_stretches(state, (grade >= 1) | (grade < 0), 24.0)
    return state


def test_episodes_and_summary_of_two_patients() -> None:
    """A resolves after a day quiet and recurs; B never has a graded row (null counts, no episode)."""
    state = _timeline(["A"] * 6 + ["B"] * 2, [0.0, 1.0, 1.5, 2.6, 4.0, 4.5, 0.0, 1.0], [0, 2, 0, 0, 1, 1, -1, -1])
    episodes, summary = episodes_and_summary(state)
    assert episodes.select("episode", "onset_day", "peak_grade", "peak_day", "resolved_day", "ongoing").rows() == [
        (1, 1.0, 2, 1.0, 1.5, False),
        (2, 4.0, 1, 4.0, None, True),
    ]
    assert episodes.get_column("duration_days").to_list() == [0.5, 0.5]
    assert episodes.get_column("recurrence").to_list() == [False, True]
    assert summary.get_column("patient_id").cast(pl.Utf8).to_list() == ["A", "B"]
    assert summary.row(0) == ("A", 2, 1, 1, 0, 0, 0, 2, 1.0, 2)  # days 0 and 2 at grade 0, day 1 at 2, day 4 at 1
    assert summary.row(1) == ("B", None, None, None, None, None, None, None, None, 0)


def test_episodes_and_summary_of_an_empty_timeline() -> None:
    episodes, summary = episodes_and_summary(_timeline([], [], []))
    assert episodes.height == 0 and summary.height == 0
    assert episodes.schema["peak_grade"] == pl.Int8 and summary.schema["days_grade_0"] == pl.Int32


def _course(rows: list[tuple[str, str, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["patient_id", "day", "item", "value", "unit"], orient="row").with_columns(
        pl.lit("x").alias("file"), pl.int_range(2, pl.len() + 2).alias("line")
    )


def test_a_batch_without_rows_of_a_toxicity_grades_to_empty_frames() -> None:
    result = grade_events(_course([("A", "0", "infusion", "axi-cel", ""), ("A", "1", "plt", "150", "10*9/L")]),
                          GradingConfig())
    for toxicity in (result.crs, result.icans):
        assert toxicity.timeline.height == toxicity.episodes.height == toxicity.summary.height == 0
        assert toxicity.evidence().height == 0


def test_a_patient_without_rows_is_left_out_and_one_row_grades() -> None:
    """B has a fever only; A has no CRS or ICANS row: A is in neither timeline nor summary."""
    config = GradingConfig()
    raw = _course([("A", "0", "infusion", "axi-cel", ""), ("A", "1", "plt", "150", "10*9/L"),
                   ("B", "0", "infusion", "axi-cel", ""), ("B", "1", "temperature", "38.6", "Cel")])
    result = grade_events(raw, config)
    timeline = result.crs.timeline
    assert timeline.select(pl.col("patient_id").cast(pl.Utf8), "t", "grade", "rule").rows() == [
        ("B", 1.0, 1, "CRS-ASTCT19-G1-FEVER")
    ]
    assert result.crs.summary.get_column("patient_id").cast(pl.Utf8).to_list() == ["B"]
    assert result.icans.timeline.height == 0
    # The same code grades the batch without its rows: an empty batch gives empty frames of the same columns.
    crs = grade_crs(_normalised_head(raw, 0), result.patients, config, load_vocabulary())
    assert crs.timeline.columns == timeline.columns and crs.timeline.height == 0
    icans = grade_icans(_normalised_head(raw, 0), result.patients, config)
    assert icans.timeline.columns == result.icans.timeline.columns and icans.summary.height == 0


def _normalised_head(raw: pl.DataFrame, rows: int) -> pl.DataFrame:
    from tocsin.core.engine import GRADED_COLUMNS
    from tocsin.core.events import IngestLimits, normalise_events

    events = normalise_events(raw, load_vocabulary(), IngestLimits(earliest_day=GradingConfig().earliest_day)).events
    return events.select(GRADED_COLUMNS).head(rows)


def test_text_positions_nulls_and_gather_rows() -> None:
    texts = pl.Series(["b", None, "zz", "a", "b"])
    assert text_positions(texts, ["a", "b"], -1).tolist() == [1, -1, -1, 0, 1]
    assert text_positions(pl.Series(["a", "b"]), ["a", "b"], -1).tolist() == [0, 1]
    assert text_positions(pl.Series([], dtype=pl.Utf8), ["a"], -1).shape == (0,)
    assert null_texts(texts).tolist() == [False, True, False, False, False]
    assert null_texts(pl.Series(["a"])).tolist() == [False]
    assert gather_rows(texts, np.array([4, 1, 0])).to_list() == ["b", None, "b"]
    assert gather_rows(texts, np.zeros(0, np.int64)).len() == 0


def test_first_label_first_case_wins_and_combination_texts() -> None:
    first = first_label([(np.array([True, False, False]), "a"), (np.array([True, True, False]), "b")])
    assert frame_of({"label": first}).get_column("label").to_list() == ["a", "b", None]
    assert first_label([(np.zeros(0, np.bool_), "a")]).index.shape == (0,)
    needed = labels(combination_texts(("x", "y")), np.array([3, 0, 1]))
    assert frame_of({"missing": needed}).get_column("missing").to_list() == ["x; y", "", "x"]


def test_frame_of_a_batch_height_builds_each_column_alone_with_the_same_result(monkeypatch) -> None:
    import tocsin.core.timeline as timeline

    rng = np.random.default_rng(5)
    height = timeline._JOINED_HEIGHT + 7
    source, other = pl.Series(["x", None, "z"]), pl.Series(["p", "q"], dtype=pl.Categorical)
    values = rng.normal(size=height)
    values[::5] = np.nan
    columns = {
        "a": Text(source, rng.integers(-1, 3, height)),
        "v": values,
        "g": NullableInt(rng.integers(-1, 5, height).astype(np.int8)),
        "b": Text(other, rng.integers(-1, 2, height)),
        "w": values * 2,
        "d": NullableInt(rng.integers(-1, 40, height), pl.Int32),
        "c": Text(source, rng.integers(0, 3, height)),
        "f": NullableInt(rng.integers(-1, 2, height), pl.Boolean),
    }
    alone = frame_of(columns)
    monkeypatch.setattr(timeline, "_JOINED_HEIGHT", height)  # the same columns, joined by type
    joined = frame_of(columns)
    assert alone.height == height and alone.columns == list(columns)
    assert alone.schema == joined.schema and alone.equals(joined, null_equal=True)
    assert alone.get_column("v").null_count() == np.isnan(values).sum()


def test_graders_give_the_same_with_the_engines_one_read_of_the_codes_and_with_their_own() -> None:
    """The engine reads the item and patient codes once for CRS, ICANS and the scores (``codes_of``); a grader
    called alone reads them itself, and a patient table listing patients in another order than the events (or
    one without rows) must give the same positions either way."""
    from tocsin.core.arrays import codes_of, event_codes
    from tocsin.core.engine import score_patients
    from tocsin.core.kinetics import kinetics_nca

    config, vocabulary = GradingConfig(), load_vocabulary()
    raw = _course([("B", "0", "infusion", "axi-cel", ""), ("B", "1", "temperature", "38.6", "Cel"),
                   ("A", "0", "infusion", "axi-cel", ""), ("A", "2", "temperature", "39.1", "Cel"),
                   ("A", "2", "ice_score", "6", ""), ("A", "3", "car_t_copies", "5000", "{copies}/ug")])
    events, patients = _normalised_head(raw, 6), grade_events(raw, config).patients
    patients = pl.concat([patients.reverse(), patients.head(0)])
    read = codes_of(events, patients)
    for own, shared in ((grade_crs(events, patients, config, vocabulary),
                         grade_crs(events, patients, config, vocabulary, read)),
                        (grade_icans(events, patients, config), grade_icans(events, patients, config, read))):
        assert own.timeline.equals(shared.timeline) and own.summary.equals(shared.summary)
        assert own.timeline.height > 0
    own_scores, shared_scores = score_patients(events, patients, config, vocabulary), score_patients(
        events, patients, config, vocabulary, read)
    assert own_scores.hscore.equals(shared_scores.hscore) and own_scores.iec_hs.equals(shared_scores.iec_hs)
    events_only = score_patients(events, patients, config, vocabulary, event_codes(events))  # no table codes
    assert own_scores.hscore.equals(events_only.hscore) and own_scores.car_hlh.equals(events_only.car_hlh)
    kinetics = kinetics_nca(events, patients, config.kinetics)
    assert kinetics.height == 1 and kinetics.equals(kinetics_nca(events, patients, config.kinetics, read))


def test_text_codes_in_python_and_by_the_enum_cast_agree(monkeypatch) -> None:
    import tocsin.core.timeline as timeline

    texts = pl.Series(["b", None, "zz", "a", "b", None])
    expected = [1, -2, -1, 0, 1, -2]
    assert text_codes(texts, ["a", "b"], -1, -2).tolist() == expected
    assert text_codes(texts.head(0), ["a", "b"], -1, -2).shape == (0,)
    monkeypatch.setattr(timeline, "_TEXTS_IN_PYTHON", 0)
    assert text_codes(texts, ["a", "b"], -1, -2).tolist() == expected
    assert text_codes(texts.drop_nulls(), ["a", "b"], -1, -2).tolist() == [1, -1, 0, 1]
    assert text_codes(texts, ["a", "b"], -1, -2).dtype == np.int64


def test_the_timeline_is_built_once_on_first_use_and_its_columns_alone_are_the_same(monkeypatch) -> None:
    """A batch writes six of the timeline's columns: ``timeline_columns`` builds only those, and must give the
    frame's own (at a course's height, where a frame joins its columns by type, and at a batch's); the timeline is
    built once, and a result pickles before and after."""
    import pickle

    import pytest
    import tocsin.core.timeline as timeline

    keep = ["patient_id", "t", "grade", "domain", "rule", "missing"]
    raw = _course([("A", "0", "infusion", "axi-cel", ""), ("A", "1", "temperature", "38.6", "Cel"),
                   ("A", "1.5", "sbp", "80", "mm[Hg]"), ("A", "2", "ice_score", "6", ""),
                   ("B", "0", "infusion", "axi-cel", ""), ("B", "1", "temperature", "37", "Cel")])
    for joined in (True, False):
        monkeypatch.setattr(timeline, "_JOINED_HEIGHT", 4096 if joined else 0)
        for toxicity in (grade_events(raw, GradingConfig()).crs, grade_events(raw, GradingConfig()).icans):
            alone = toxicity.timeline_columns(keep)
            assert "timeline" not in toxicity.__dict__  # not built for the columns alone
            copy = pickle.loads(pickle.dumps(toxicity))
            full = toxicity.timeline
            assert toxicity.timeline is full and full.columns == list(toxicity.timeline_names)
            assert full.height > 0 and alone.schema == full.select(keep).schema
            assert alone.equals(full.select(keep), null_equal=True)
            assert toxicity.timeline_columns(keep[::-1]).equals(full.select(keep[::-1]), null_equal=True)
            assert copy.timeline.equals(full, null_equal=True)
            assert pickle.loads(pickle.dumps(toxicity)).timeline.equals(full, null_equal=True)
            with pytest.raises(pl.exceptions.ColumnNotFoundError):
                grade_events(raw, GradingConfig()).crs.timeline_columns(["grade", "no_such_column"])


def test_a_taken_column_reads_its_rows_when_read_and_in_a_frame() -> None:
    """A ``Taken`` column is its source at its rows (-1 and a NaN value: null; ``finite``: NaN 0, infinities the
    largest floats), the same in a frame as the array it stands for; a grader's read keeps the values."""
    from tocsin.core.timeline import Taken

    source = np.array([1.5, np.nan, np.inf, -np.inf, 4.0])
    index = np.array([0, -1, 1, 2, 3, 4], dtype=np.int32)
    plain = np.array([1.5, np.nan, np.nan, np.inf, -np.inf, 4.0])
    assert np.array_equal(Taken(source, index).values(), plain, equal_nan=True)
    assert np.array_equal(Taken(source, index, finite=True).values(), np.nan_to_num(plain))
    assert np.isnan(Taken(source[:0], np.full(2, -1, np.int32)).values()).all()  # no source row: all null
    assert Taken(source, index[:0]).values().shape == (0,)
    rng = np.random.default_rng(3)
    values = rng.choice([np.nan, np.inf, -np.inf, 0.0, 2.5, -1.0], 500)
    rows = rng.integers(-1, 500, 900).astype(np.int32)
    reference = np.where(rows >= 0, values[rows], np.nan)
    assert np.array_equal(Taken(values, rows).values(), reference, equal_nan=True)
    assert np.array_equal(Taken(values, rows, finite=True).values(), np.nan_to_num(reference))
    frame = frame_of({"a": Taken(source, index), "b": plain, "r": Taken(source, index, finite=True)})
    assert frame.get_column("a").equals(frame.get_column("b").alias("a"), null_equal=True)
    assert frame.get_column("a").null_count() == 2 and frame.get_column("r").null_count() == 0
    state = Assessments(labels(["P"], np.zeros(6, np.int64)), np.zeros(6, np.int64), np.zeros(6, np.bool_),
                        np.arange(6.0))
    state.add(a=Taken(source, index))
    read = state["a"]
    assert np.array_equal(read, plain, equal_nan=True) and state["a"] is read


def test_a_rule_id_the_criteria_do_not_list_is_refused_when_cited() -> None:
    """Only the rule codes a grade cites are checked (a null rule, -1, cites none)."""
    import pytest
    from tocsin.core.engine import _toxicity_result
    from tocsin.criteria import load_scale

    graded = _timeline(["P", "P", "P"], [0.0, 1.0, 2.0], [0, 1, 1])
    graded.add(rule=labels(["CRS-NOPE", "CRS-ASTCT19-G1-FEVER", "CRS-NOT-CITED"], np.array([0, -1, 1])))
    with pytest.raises(RuntimeError, match=r"\['CRS-NOPE'\]"):
        _toxicity_result(load_scale("crs_astct2019"), graded, [], [])
