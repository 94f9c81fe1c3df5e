"""Tests for harness.eval.metrics: golden values computed by hand from the official VQA rules and CIDEr-D."""

from __future__ import annotations

import math

import pytest

from harness.eval.metrics import (
    VQA_CONTRACTIONS,
    MetricResult,
    cider,
    cider_scores,
    exact_match,
    exact_match_scores,
    mean_result,
    normalize_vqa_answer,
    tokenize_caption,
    vqa_accuracy,
    vqa_scores,
)

# --------------------------------------------------------------------------------------------------------------
# MetricResult / mean_result
# --------------------------------------------------------------------------------------------------------------


def test_mean_result_values():
    r = mean_result([1.0, 0.0, 1.0, 0.0])
    assert r.value == pytest.approx(0.5)
    # sample std (ddof=1) = sqrt(1/3); stderr = sqrt(1/3)/2
    assert r.stderr == pytest.approx(math.sqrt(1 / 3) / 2)
    assert r.n == 4


def test_mean_result_empty_and_single():
    empty = mean_result([])
    assert math.isnan(empty.value) and math.isnan(empty.stderr) and empty.n == 0
    one = mean_result([0.7])
    assert one.value == pytest.approx(0.7) and math.isnan(one.stderr) and one.n == 1


def test_to_dict_keeps_nan():
    d = MetricResult(value=math.nan, stderr=math.nan, n=0).to_dict()
    assert set(d) == {"value", "stderr", "n"}
    assert isinstance(d["value"], float) and math.isnan(d["value"]) and math.isnan(d["stderr"])
    assert d["n"] == 0
    assert MetricResult(0.25, 0.1, 3).to_dict() == {"value": 0.25, "stderr": 0.1, "n": 3}


# --------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two", "2"),
        ("the dog.", "dog"),
        ("isnt", "isn't"),
        ("dont", "don't"),
        ("yes!", "yes"),
        ("3.5", "3.5"),  # period followed by a digit is kept
        ("3.", "3"),
        ("1,000", "1000"),  # digit,digit -> every punctuation mark is deleted, not spaced
        ("a", ""),
        ("An apple", "apple"),
        ("  big \t dog\n ", "big dog"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only zero..ten are mapped
        ("red,blue", "red blue"),  # no space next to ',' -> replaced by a space
        ("yes, no", "yes no"),  # ', ' present -> deleted
        ("t-shirt", "t shirt"),
        ("(5)", "5"),
        ("what's", "what's"),  # apostrophe is not in the punctuation list
        ("10:30", "10:30"),  # colon is not in the punctuation list
        ("YES", "yes"),
    ],
)
def test_normalize_vqa_answer(raw, expected):
    assert normalize_vqa_answer(raw) == expected


def test_contraction_table_is_full_official_list():
    # the official dict literal has 120 distinct keys
    assert len(VQA_CONTRACTIONS) == 120
    for k in ("aint", "wont", "youve", "yall'd've", "oclock", "maam", "twas"):
        assert k in VQA_CONTRACTIONS


# --------------------------------------------------------------------------------------------------------------
# VQA accuracy
# --------------------------------------------------------------------------------------------------------------


def _refs(k_match: int, answer: str = "cat", other: str = "dog", total: int = 10) -> list[str]:
    return [answer] * k_match + [other] * (total - k_match)


@pytest.mark.parametrize(
    "k, expected",
    [
        # leave-one-out over 10 answers, m = #matches:
        # m=0: 0; m=1: (1*0 + 9*1/3)/10 = 0.3; m=2: (2*1/3 + 8*2/3)/10 = 0.6;
        # m=3: (3*2/3 + 7*1)/10 = 0.9; m>=4: 1.0
        (0, 0.0),
        (1, 0.3),
        (2, 0.6),
        (3, 0.9),
        (4, 1.0),
        (7, 1.0),
        (10, 1.0),
    ],
)
def test_vqa_score_ten_refs(k, expected):
    assert vqa_scores(["cat"], [_refs(k)])[0] == pytest.approx(expected)


def test_vqa_score_normalisation_applied():
    # "Two" normalises to "2"; GT "two." and "2" also normalise to "2"
    assert vqa_scores(["Two"], [["2"] * 10])[0] == pytest.approx(1.0)
    assert vqa_scores(["2"], [["two."] * 4 + ["3"] * 6])[0] == pytest.approx(1.0)
    assert vqa_scores(["The Dog!"], [_refs(1, answer="dog", other="cat")])[0] == pytest.approx(0.3)


def test_vqa_score_fewer_than_ten_refs():
    # same leave-one-out rule over what is there
    assert vqa_scores(["cat"], [["cat"]])[0] == 0.0  # single reference: always 0 (documented)
    assert vqa_scores(["cat"], [["cat", "cat"]])[0] == pytest.approx(1 / 3)
    assert vqa_scores(["cat"], [["cat", "dog", "dog"]])[0] == pytest.approx((0 + 1 / 3 + 1 / 3) / 3)
    assert vqa_scores(["cat"], [["cat"] * 4])[0] == pytest.approx(1.0)


def test_vqa_accuracy_aggregate():
    preds = ["cat", "cat", "cat", "cat"]
    refs = [_refs(0), _refs(1), _refs(2), _refs(4)]
    r = vqa_accuracy(preds, refs)
    scores = [0.0, 0.3, 0.6, 1.0]
    mean = sum(scores) / 4
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / 3)
    assert r.n == 4
    assert r.value == pytest.approx(mean)
    assert r.stderr == pytest.approx(sd / 2)


@pytest.mark.parametrize("pred", ["", "  ", "a", "The", "an."])
def test_an_empty_answer_never_scores(pred):
    """References that normalise to "" (option letters) must not reward a model that says nothing."""
    assert vqa_scores([pred], [["A"] * 10]) == [0.0]
    assert vqa_scores([pred], [[""] * 10]) == [0.0]
    assert exact_match_scores([pred], [["a"]]) == [0.0]
    assert vqa_scores(["two"], [["2"] * 10]) == [1.0]  # normalisation still matches what it should


def test_vqa_errors_and_empty():
    with pytest.raises(ValueError):
        vqa_scores(["a", "b"], [["a"] * 10])
    with pytest.raises(ValueError):
        vqa_accuracy(["a"], [[]])
    r = vqa_accuracy([], [])
    assert math.isnan(r.value) and math.isnan(r.stderr) and r.n == 0


# --------------------------------------------------------------------------------------------------------------
# Exact match
# --------------------------------------------------------------------------------------------------------------


def test_exact_match():
    preds = ["Two", "the cat.", "yes", "blue"]
    refs = [["2"], "cat", ["no", "Yes"], ["red"]]
    assert exact_match_scores(preds, refs) == [1.0, 1.0, 1.0, 0.0]
    r = exact_match(preds, refs)
    assert r.value == pytest.approx(0.75) and r.n == 4
    assert r.stderr == pytest.approx(0.25)  # sd = 0.5 (ddof=1), /sqrt(4)
    # without normalisation only the literal string matches
    assert exact_match_scores(preds, refs, normalize=False) == [0.0, 0.0, 0.0, 0.0]  # "yes" != "Yes"
    assert exact_match_scores(["Yes"], [["Yes"]], normalize=False) == [1.0]


def test_exact_match_errors_and_empty():
    with pytest.raises(ValueError):
        exact_match(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        exact_match(["a"], [[]])
    r = exact_match([], [])
    assert math.isnan(r.value) and r.n == 0


# --------------------------------------------------------------------------------------------------------------
# CIDEr-D
# --------------------------------------------------------------------------------------------------------------

CAPTION_REFS = [
    [
        "A man is riding a horse on the beach.",
        "A person rides a brown horse along the shore.",
        "Man on horseback at the beach.",
    ],
    [
        "Two dogs are playing with a frisbee in the park.",
        "A pair of dogs play frisbee on the grass.",
        "Dogs catching a frisbee in a park.",
        "Two dogs running after a red frisbee.",
    ],
    [
        "A plate of pasta with tomato sauce.",
        "Spaghetti with red sauce on a white plate.",
        "A bowl of noodles covered in tomato sauce.",
    ],
    [
        "A city street with cars and tall buildings.",
        "Traffic on a busy downtown street.",
        "Cars drive down a street lined with skyscrapers.",
    ],
]
CAPTION_PREDS = [
    "A man riding a horse on the beach",
    "two dogs playing frisbee in a park",
    "a cat sitting on a couch",
    "cars on a city street",
]


def test_tokenize_caption():
    assert tokenize_caption("A Man's dog, running -- fast!") == "a man 's dog running fast"
    assert tokenize_caption("Don't (really) 3.5 1,000 t-shirt end.") == "do n't really 3.5 1,000 t-shirt end"
    assert tokenize_caption('  "Quoted"  `text\'  ') == "quoted text"
    assert tokenize_caption("") == ""


def test_cider_matches_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [tokenize_caption(c) for c in refs] for i, refs in enumerate(CAPTION_REFS)}
    res = {i: [tokenize_caption(p)] for i, p in enumerate(CAPTION_PREDS)}
    ref_corpus, ref_per_image = Cider().compute_score(gts, res)

    r = cider(CAPTION_PREDS, CAPTION_REFS)
    per = cider_scores(CAPTION_PREDS, CAPTION_REFS)
    assert r.value == pytest.approx(float(ref_corpus), rel=1e-12)
    assert per == pytest.approx([float(s) for s in ref_per_image], rel=1e-12)
    # pycocoevalcap's corpus score is the mean of per-image scores
    assert r.value == pytest.approx(sum(per) / len(per), rel=1e-12)
    assert r.n == 4
    assert math.isfinite(r.stderr) and r.stderr > 0
    # the wrong caption (image 2) scores lowest
    assert per[2] == min(per)


def test_cider_identical_beats_wrong():
    refs = [["a dog runs on the grass"] * 3, ["a red car parked on the street"] * 3, ["a bowl of soup"] * 3]
    good = cider(["a dog runs on the grass", "a red car parked on the street", "a bowl of soup"], refs)
    bad = cider(["a bowl of soup", "a dog runs on the grass", "a red car parked on the street"], refs)
    assert good.value > bad.value
    # identical to all refs -> cosine 1 for every n-gram order, no length penalty -> 10 x 1
    assert good.value == pytest.approx(10.0)
    assert bad.value == pytest.approx(0.0, abs=0.5)
    assert math.isfinite(good.stderr) and good.n == 3


def test_cider_edge_cases():
    r = cider([], [])
    assert math.isnan(r.value) and math.isnan(r.stderr) and r.n == 0
    assert cider_scores([], []) == []
    with pytest.raises(ValueError):
        cider(["a dog"], [["a dog"], ["a cat"]])
    with pytest.raises(ValueError):
        cider(["a dog"], [[]])
    # single image: IDF is log(1) = 0, so CIDEr is 0 (documented degenerate case); stderr undefined
    one = cider(["a dog"], [["a dog", "a dog"]])
    assert one.value == 0.0 and one.n == 1 and math.isnan(one.stderr)


# --------------------------------------------------------------------------------------------------------------
# MM1-style averages over tasks (harness.eval.aggregates)
# --------------------------------------------------------------------------------------------------------------


def _entry(task, k, metric, value, stderr=0.1, n=10, subset="all"):
    return {"task": task, "shots": k, "metric": metric, "subset": subset, "value": value, "stderr": stderr, "n": n}


def test_mm1_averages_per_shot():
    from harness.eval.aggregates import mm1_averages

    entries = [
        _entry("caption", 0, "cider", 0.6),
        _entry("coco", 0, "cider", 1.0),
        _entry("vqa", 0, "vqa_accuracy", 0.5),
        _entry("gqa", 0, "exact_match", 0.3),
        _entry("vqa", 0, "vqa_accuracy", 0.9, subset="colour"),  # a question type, not a task
        _entry("textcore", 0, "textcore_average", 0.7),
        _entry("world_mcq", 0, "accuracy", 0.2),
        _entry("caption", 4, "cider", 0.8),
    ]
    out = {(e["shots"], e["subset"]): e for e in mm1_averages(entries)}
    assert set(out) == {
        (0, "caption_tasks"),
        (0, "vqa_tasks"),
        (0, "all_tasks"),
        (4, "caption_tasks"),
        (4, "all_tasks"),
    }
    assert all(e["task"] == "mm1_average" for e in out.values())
    cap, vqa, allt = out[(0, "caption_tasks")], out[(0, "vqa_tasks")], out[(0, "all_tasks")]
    assert cap["metric"] == "cider_mean" and cap["value"] == pytest.approx(0.8) and cap["tasks"] == ["caption", "coco"]
    assert vqa["metric"] == "vqa_mean" and vqa["value"] == pytest.approx(0.4) and vqa["tasks"] == ["vqa", "gqa"]
    assert allt["metric"] == "task_mean" and allt["value"] == pytest.approx(0.6) and allt["n"] == 40
    assert cap["stderr"] == pytest.approx(math.sqrt(0.02) / 2)
    assert out[(4, "all_tasks")]["value"] == pytest.approx(0.8)


def test_mm1_averages_propagate_nan():
    from harness.eval.aggregates import mm1_averages

    out = mm1_averages([_entry("caption", 0, "cider", math.nan, math.nan, 0), _entry("coco", 0, "cider", 1.0)])
    assert math.isnan(out[0]["value"]) and out[0]["tasks"] == ["caption", "coco"]
    assert mm1_averages([]) == []
