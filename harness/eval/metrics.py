"""Evaluation metrics for the MM1-style few-shot benchmark suite.

MM1 (McKinney et al. 2024, §3.1) evaluates pre-trained models 0/4/8-shot on eight captioning and VQA tasks and
reports **CIDEr** for the captioning sets (COCO, NoCaps, TextCaps) and **VQA accuracy** for the VQA sets (VQAv2,
TextVQA, VizWiz, OK-VQA); GQA is scored by exact match (see docs/mm1_reference.md §1.6). This module implements
those three metrics without Java and without importing any evaluation kit:

* **VQA accuracy** -- Antol et al. 2015, "VQA: Visual Question Answering" (ICCV), and the official VQAv2 evaluation
  script (GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, also used by EvalAI, LAVIS and
  TRI-ML/vlm-evaluation). Answers are normalised with the official rules (:func:`normalize_vqa_answer`) and a
  prediction scores ``mean_i min(1, #{j != i : gt_j == pred} / 3)`` over the ground-truth answers (leave-one-out).
* **Exact match** -- string equality against any reference, after the same VQA normalisation by default.
* **CIDEr-D** -- Vedantam, Zitnick & Parikh 2015, "CIDEr: Consensus-based Image Description Evaluation" (CVPR),
  computed by ``pycocoevalcap.cider.cider.Cider`` (the coco-caption implementation, which is CIDEr-D: clipped
  n-gram counts and a Gaussian length penalty, sigma = 6, n = 1..4, scores x10). The Java PTB tokenizer that
  ``COCOEvalCap`` normally runs first is replaced by a documented pure-Python stand-in (:func:`tokenize_caption`).

Every metric returns a :class:`MetricResult` (mean, standard error over samples, n). Per-sample score lists are
exposed (:func:`vqa_scores`, :func:`exact_match_scores`, :func:`cider_scores`) so callers can aggregate by
question/answer type with :func:`mean_result`. Scores are on the natural scale of each metric (VQA accuracy and
exact match in [0, 1]; CIDEr as returned by pycocoevalcap, roughly [0, 10]); papers, MM1 included, print
``100 x`` these values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PTB_STRIPPED_PUNCTUATION",
    "VQA_ARTICLES",
    "VQA_CONTRACTIONS",
    "VQA_NUMBER_WORDS",
    "VQA_PUNCTUATION",
    "MetricResult",
    "cider",
    "cider_scores",
    "exact_match",
    "exact_match_scores",
    "mean_result",
    "normalize_vqa_answer",
    "tokenize_caption",
    "vqa_accuracy",
    "vqa_scores",
]


# ---------------------------------------------------------------------------------------------------------------
# Result container and aggregation
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricResult:
    """Mean of per-sample scores with its standard error.

    ``value`` is NaN when ``n == 0`` (a missing metric is never reported as 0.0); ``stderr`` is the standard error
    of the mean, ``std(ddof=1) / sqrt(n)``, and is NaN when ``n < 2``.
    """

    value: float
    stderr: float
    n: int

    def to_dict(self) -> dict:
        """``{"value", "stderr", "n"}`` with plain Python types; NaN stays ``float('nan')``."""
        return {"value": float(self.value), "stderr": float(self.stderr), "n": int(self.n)}


def mean_result(scores: Sequence[float]) -> MetricResult:
    """Aggregate per-sample scores into a :class:`MetricResult` (mean, stderr with ddof=1, n).

    NaN entries are not filtered: they propagate into ``value`` and ``stderr``.
    """
    xs = [float(s) for s in scores]
    n = len(xs)
    if n == 0:
        return MetricResult(value=math.nan, stderr=math.nan, n=0)
    mean = math.fsum(xs) / n
    if n < 2:
        return MetricResult(value=mean, stderr=math.nan, n=1)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return MetricResult(value=mean, stderr=math.sqrt(var / n), n=n)


def _check_lengths(predictions: Sequence, references: Sequence, what: str) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError(f"{what}: predictions and references must be sequences, not a single string")
    if len(predictions) != len(references):
        raise ValueError(
            f"{what}: got {len(predictions)} predictions but {len(references)} reference entries; "
            "they must be aligned one-to-one"
        )


# ---------------------------------------------------------------------------------------------------------------
# VQA answer normalisation (official VQAv2 / EvalAI rules)
# ---------------------------------------------------------------------------------------------------------------

#: Contraction fixes of the official VQA evaluation (its full table). Keys are the apostrophe-less (or partially
#: apostrophised) spellings annotators typed. The official file mixes straight (') and curly (U+2019) apostrophes
#: in the values -- an artefact that makes e.g. "dont" -> "don’t" never equal a typed "don't"; like EvalAI/LAVIS/
#: vlm-evaluation we use straight apostrophes throughout. The capitalised keys ("Im", "Ive", ...) can never fire
#: because text is lower-cased first; they are kept so the table matches the official one.
VQA_CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    # (sic) the official table maps "somebody'd" to "somebodyd"; kept as is.
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}

#: Number words mapped to digits (official ``manualMap``); only whole words, only zero..ten (and "none" -> "0").
VQA_NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

#: Articles dropped as whole words.
VQA_ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

#: Punctuation handled by the official ``processPunctuation`` (the period is handled separately, see below).
#: Apostrophes, colons, '#', '%', '&', '*', '$' etc. are NOT in the list and survive normalisation.
VQA_PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)

# A comma between two digits ("1,000") anywhere in the answer switches every punctuation mark to deletion.
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its "(?!<=\d)" is a (typo'd) negative look-ahead that always
# succeeds at a '.', so the effective rule is "delete a period unless a digit follows it" ("3.5" and ".5" keep
# theirs, "3." and "dog." lose it). We write that effective rule directly. (The official call also passes
# re.UNICODE as the `count` argument, capping deletions at 32 per answer; we do not reproduce that cap.)
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def _process_punctuation(text: str) -> str:
    """Official punctuation step.

    For each mark in :data:`VQA_PUNCTUATION`: if the *original* text has the mark next to a space (``"p "`` or
    ``" p"``) or contains a digit-comma-digit pattern, every occurrence is deleted; otherwise every occurrence is
    replaced by a space (so "red,blue" -> "red blue" but "1,000" -> "1000" and "yes, no" -> "yes no"). Periods
    are then deleted unless followed by a digit.
    """
    out = text
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in VQA_PUNCTUATION:
        if p not in out:
            continue
        if delete_all or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _process_digits_articles(text: str) -> str:
    """Official digit/article/contraction step: lower-case, split on whitespace, map number words to digits, drop
    articles, fix contractions, re-join with single spaces."""
    words = []
    for w in text.lower().split():
        w = VQA_NUMBER_WORDS.get(w, w)
        if w in VQA_ARTICLES:
            continue
        words.append(VQA_CONTRACTIONS.get(w, w))
    return " ".join(words)


def normalize_vqa_answer(ans: str) -> str:
    """Normalise a VQA answer exactly as the official VQAv2 evaluation normalises predictions.

    Steps: newline/tab -> space and strip; punctuation (:func:`_process_punctuation`: marks in
    :data:`VQA_PUNCTUATION` become spaces, or are deleted when adjacent to a space or when the answer contains a
    digit-comma-digit; periods deleted unless followed by a digit); then lower-case, whitespace split, number words
    -> digits (:data:`VQA_NUMBER_WORDS`), articles a/an/the removed, contractions fixed (:data:`VQA_CONTRACTIONS`),
    joined with single spaces. Examples: "Two" -> "2", "the dog." -> "dog", "isnt" -> "isn't", "yes!" -> "yes",
    "3.5" -> "3.5", "1,000" -> "1000", "none" -> "0".
    """
    if not isinstance(ans, str):
        raise TypeError(f"VQA answers must be str, got {type(ans).__name__}")
    text = ans.replace("\n", " ").replace("\t", " ").strip()
    return _process_digits_articles(_process_punctuation(text))


# ---------------------------------------------------------------------------------------------------------------
# VQA accuracy
# ---------------------------------------------------------------------------------------------------------------


def _single_vqa_score(pred: str, gts: Sequence[str]) -> float:
    if not pred:  # nothing left after normalisation ("", "a", "the"): no answer is never right, even where the
        return 0.0  # official script would match it to a reference that also normalises to "" (an option letter A)
    k = len(gts)
    # for each held-out GT answer i, count matches among the other k-1 answers, cap at 3 matches = full credit
    matches = [g == pred for g in gts]
    total_matching = sum(matches)
    accs = [min(1.0, (total_matching - int(m)) / 3.0) for m in matches]
    return math.fsum(accs) / k


def vqa_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Per-sample official VQA accuracy in [0, 1].

    Prediction and every ground-truth answer are normalised with :func:`normalize_vqa_answer` (the official script
    only runs the punctuation step on ground truths, and only when they disagree, because VQAv2 annotations are
    already normalised; applying the full normaliser is identical there and fairer for TextVQA/VizWiz/OK-VQA
    ground truths). Then, with ``m`` = number of GT answers equal to the prediction, for each GT answer ``i``
    ``acc_i = min(1, #{j != i : gt_j == pred} / 3)`` and the score is ``mean_i acc_i``. With 10 GT answers this
    gives 0, 0.3, 0.6, 0.9, 1.0 for m = 0, 1, 2, 3, >=4.

    Fewer than 10 GT answers: the same leave-one-out rule is applied over the answers that exist, so the best
    attainable score with ``k`` answers is ``min(1, (k-1)/3)`` -- a single reference always scores 0 and two
    identical references score 1/3. Use :func:`exact_match` for single-reference data (e.g. GQA).

    One departure: a prediction with nothing left after normalisation (empty, or only an article) scores 0. The
    official script would match it to references that also normalise to "" ("A", "a"), which gave an untrained
    model that answers nothing 1/3 on a benchmark of option letters.

    Raises ``ValueError`` if the lengths differ or a sample has no GT answers.
    """
    _check_lengths(predictions, references, "vqa_scores")
    out = []
    for idx, (pred, gts) in enumerate(zip(predictions, references)):
        if isinstance(gts, str):
            raise TypeError(f"vqa_scores: references[{idx}] must be a list of answers, got a str")
        if len(gts) == 0:
            raise ValueError(f"vqa_scores: references[{idx}] is empty; every question needs >= 1 GT answer")
        out.append(_single_vqa_score(normalize_vqa_answer(pred), [normalize_vqa_answer(g) for g in gts]))
    return out


def vqa_accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> MetricResult:
    """Mean official VQA accuracy (see :func:`vqa_scores`) with standard error; NaN / n=0 for empty input."""
    return mean_result(vqa_scores(predictions, references))


# ---------------------------------------------------------------------------------------------------------------
# Exact match
# ---------------------------------------------------------------------------------------------------------------


def exact_match_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | Sequence[str],
    normalize: bool = True,
) -> list[float]:
    """Per-sample exact match (1.0 / 0.0) against any reference.

    ``references[i]`` may be one string or a list of acceptable strings. With ``normalize=True`` both sides go
    through :func:`normalize_vqa_answer`; with ``normalize=False`` plain string equality (case and whitespace
    sensitive). Raises ``ValueError`` on a length mismatch or an empty reference list.
    """
    _check_lengths(predictions, references, "exact_match_scores")
    norm = normalize_vqa_answer if normalize else (lambda s: s)
    out = []
    for idx, (pred, refs) in enumerate(zip(predictions, references)):
        ref_list = [refs] if isinstance(refs, str) else list(refs)
        if not ref_list:
            raise ValueError(f"exact_match_scores: references[{idx}] is empty")
        p = norm(pred)
        out.append(1.0 if p.strip() and any(p == norm(r) for r in ref_list) else 0.0)  # an empty answer never is
    return out


def exact_match(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | Sequence[str],
    normalize: bool = True,
) -> MetricResult:
    """Mean exact match (see :func:`exact_match_scores`) with standard error; NaN / n=0 for empty input."""
    return mean_result(exact_match_scores(predictions, references, normalize=normalize))


# ---------------------------------------------------------------------------------------------------------------
# CIDEr-D
# ---------------------------------------------------------------------------------------------------------------

#: Tokens that pycocoevalcap's PTBTokenizer deletes after Stanford PTB tokenisation (its PUNCTUATIONS list, with
#: the bracket tokens -LRB-/-RRB-/-LCB-/-RCB- written as the characters they stand for).
PTB_STRIPPED_PUNCTUATION: tuple[str, ...] = (
    "''", "'", "``", "`", "(", ")", "{", "}", ".", "?", "!", ",", ":", "-", "--", "...", ";",
)

_QUOTE_TRANSLATION = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."})
# PTB splits these clitics off into their own tokens ("man's" -> "man 's", "don't" -> "do n't"); they are kept.
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLITIC_RE = re.compile(r"(?<=[a-z0-9])(n't|'s|'re|'ve|'ll|'d|'m)(?![a-z0-9])")
# Always separators: PTB makes these standalone tokens and then they are deleted (or, for [ ], we delete them too).
_ALWAYS_STRIPPED_RE = re.compile(r"[!?;\"`()\[\]{}]")
# Periods, commas and colons survive only between digits ("3.5", "1,000", "10:30"), as PTB keeps those tokens.
_NUMERIC_PUNCT_RE = re.compile(r"(?<!\d)[.,:]|[.,:](?!\d)")
# Hyphens survive only inside a word ("t-shirt"); free-standing "-" / "--" are deleted.
_LOOSE_HYPHEN_RE = re.compile(r"(?<![a-z0-9])-|-(?![a-z0-9])")
_WS_RE = re.compile(r"\s+")


def tokenize_caption(text: str) -> str:
    """Pure-Python stand-in for pycocoevalcap's Java ``PTBTokenizer`` (lower-case, tokenise, drop punctuation).

    Rules: curly quotes -> straight; lower-case; clitics split off as PTB does (``n't 's 're 've 'll 'd 'm``:
    "man's" -> "man 's", "don't" -> "do n't"); these characters become spaces everywhere: ``! ? ; " ` ( ) [ ] { }``;
    ``. , :`` become spaces unless between two digits ("3.5", "1,000", "10:30" kept); ``-`` becomes a space unless
    inside a word ("t-shirt" kept); any remaining apostrophe not starting a clitic token is removed; whitespace is
    collapsed. This reproduces the deletion of :data:`PTB_STRIPPED_PUNCTUATION`. Known differences from the Java
    tokenizer: abbreviations keep no period ("u.s." -> "u s", PTB keeps "u.s."); PTB leaves '[' / ']' as
    "-lsb-"/"-rsb-" tokens (not in its deletion list) while we drop them; other symbols (``/ & $ % #``) stay
    attached to their word here whereas PTB may split some of them off. CIDEr values therefore can differ slightly
    from a Java-tokenised COCOEvalCap run; they are exactly pycocoevalcap's CIDEr-D on these tokens.
    """
    t = text.translate(_QUOTE_TRANSLATION).lower().replace("\n", " ").replace("\t", " ")
    t = _CLITIC_RE.sub(r" \1", t)
    t = _ALWAYS_STRIPPED_RE.sub(" ", t)
    t = _NUMERIC_PUNCT_RE.sub(" ", t)
    t = _LOOSE_HYPHEN_RE.sub(" ", t)
    tokens = []
    for tok in t.split():
        if tok not in _CLITICS:
            tok = tok.replace("'", "")
        if tok:
            tokens.append(tok)
    return _WS_RE.sub(" ", " ".join(tokens)).strip()


def _cider_compute(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    _check_lengths(predictions, references, "cider")
    if len(predictions) == 0:
        return math.nan, []
    gts: dict[int, list[str]] = {}
    res: dict[int, list[str]] = {}
    for idx, (pred, refs) in enumerate(zip(predictions, references)):
        if isinstance(refs, str):
            raise TypeError(f"cider: references[{idx}] must be a list of captions, got a str")
        if len(refs) == 0:
            raise ValueError(f"cider: references[{idx}] is empty; every image needs >= 1 reference caption")
        gts[idx] = [tokenize_caption(r) for r in refs]
        res[idx] = [tokenize_caption(pred)]

    from pycocoevalcap.cider.cider import Cider  # pure Python; imported lazily to keep module import cheap

    corpus, per_image = Cider().compute_score(gts, res)
    return float(corpus), [float(s) for s in per_image]


def cider_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Per-image CIDEr-D scores from pycocoevalcap (see :func:`cider`); ``[]`` for empty input."""
    return _cider_compute(predictions, references)[1]


def cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> MetricResult:
    """Corpus CIDEr-D via ``pycocoevalcap.cider.cider.Cider().compute_score(gts, res)``.

    ``gts``/``res`` are dicts ``index -> list[str]`` built from :func:`tokenize_caption` output (one prediction per
    image, >= 1 reference). ``value`` is pycocoevalcap's corpus score, which its ``CiderScorer.compute_score``
    defines as ``np.mean`` of the per-image scores, so it equals the mean of :func:`cider_scores`; ``stderr`` is
    computed from those per-image scores. Scale is pycocoevalcap's (x10 built in); papers print 100 x value.

    The IDF (document frequency) is computed over the reference sets of the images evaluated *in this call*, so
    scores depend on the evaluated set: score a whole split at once, not per batch, and do not compare across
    differently sized subsets. Degenerate case: with a single image, log(#images) = 0 and every score is 0.

    Empty input gives ``MetricResult(nan, nan, 0)``; length mismatch or an image without references raises.
    """
    corpus, per_image = _cider_compute(predictions, references)
    if not per_image:
        return MetricResult(value=math.nan, stderr=math.nan, n=0)
    agg = mean_result(per_image)
    return MetricResult(value=corpus, stderr=agg.stderr, n=agg.n)
