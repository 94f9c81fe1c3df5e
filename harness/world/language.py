"""Every piece of text in the world: captions, dense captions, questions, interleaved documents, text-only passages.

All text is computed from a :class:`Scene`, so every answer is right by construction. The formats below are module
constants because other parts of the harness parse or build the same strings (prompts, metrics, few-shot contexts).

* Captions are short, lowercase, end in ".", and vary template, object order, synonyms and which attributes they
  mention: the ``captions_per_image`` references of one image are distinct phrasings (they are CIDEr references).
* The dense caption is MM1's "visually enriched" synthetic caption: every object with size, colour, shape and
  position, the object count and the glyph, in canonical wording.
* Answers are short lowercase words or digits with no punctuation, so exact match is a fair metric.
* Interleaved documents group images that share one theme (a question type, e.g. the glyph), and most of their texts
  are questions of that type about their own image: in-context examples then tell a model *which* kind of answer is
  asked for, the effect the prototype found only in models trained on interleaved data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from harness.world.scene import COLUMN_WORDS, QUADRANT_WORDS, Scene, SceneObject

QA_TEMPLATE = "Question: {question} Answer: {answer}"
QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "count", "position", "glyph", "pattern", "dot", "pair", "split")
# The world's controls (scene.py): questions whose answer depends, by construction, on one mechanism of MM1.
CONTROL_TYPES: dict[str, str] = {"pattern": "resolution", "dot": "visual_tokens", "pair": "visual_tokens",
                                 "split": "visual_tokens"}
QUESTION_TEMPLATES: dict[str, str] = {
    "colour": "what colour is the {shape}?",  # asked only when the shape is unique in the scene
    "shape": "what shape is the {colour} object?",  # only when the colour is unique
    "count": "how many objects are there?",
    "position": "where is the {colour} {shape}?",  # only when the colour-shape pair is unique
    "glyph": "what number is written in the corner?",
    "pattern": "what pattern covers the picture?",
    "dot": "which column is the black dot in?",
    "pair": "are the two small dots in the same cell?",
    "split": "is the black dot split between two cells?",
}
EXTRA_QA_PROB = 0.3  # chance of a second question of the colour / shape / position type, when one exists
DOC_QA_PROB = 0.75  # share of a themed document's texts that are theme questions (the rest are captions)

SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
SHAPE_WORDS = {
    "circle": ("circle", "disc"),
    "square": ("square",),
    "triangle": ("triangle",),
    "diamond": ("diamond",),
    "cross": ("cross", "plus sign"),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner"),
    "top": ("at the top",),
    "top right": ("at the top right", "in the top right corner"),
    "left": ("on the left",),
    "center": ("in the center", "in the middle"),
    "right": ("on the right",),
    "bottom left": ("at the bottom left", "in the bottom left corner"),
    "bottom": ("at the bottom",),
    "bottom right": ("at the bottom right",),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {things}: the joined object phrases; {n}: count word; {noun}: "object"/"objects".
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{things}.",
    "there {be} {n} {noun}: {things}.",
    "an image of {things}.",
    "a picture with {things}.",
    "{things} on a grey background.",
    "a grey background with {things}.",
    "this image shows {things}.",
    "we can see {things}.",
)
GLYPH_SENTENCES = (
    "the number {g} is written in the corner.",
    "a small {g} is written in the bottom right corner.",
    "there is a tiny number {g} in the corner.",
)
GLYPH_MENTION_PROB = 0.3
DENSE_GLYPH_SENTENCE = "the number {g} is written in the bottom right corner."
# Captions mention the controls often, so that the encoders' contrastive pre-training has a reason to keep them.
PATTERN_SENTENCES: dict[str, tuple[str, ...]] = {
    "plain": ("the picture has no pattern.", "there is no pattern."),
    "horizontal": ("fine horizontal stripes cover the picture.", "the picture has a horizontal pattern."),
    "vertical": ("fine vertical stripes cover the picture.", "the picture has a vertical pattern."),
    "checked": ("a fine checked pattern covers the picture.", "the picture has a checked pattern."),
}
DOT_SENTENCES = ("a black dot is in the {c} column.", "there is a black dot in the {c} column.")
# The pair's captions name where it is, never whether its dots share a cell: a caption that said so would teach the
# encoder's contrastive pre-training to put the answer into every patch, and then 2x2 pooled tokens would carry it.
PAIR_SENTENCES = ("two small dots are at the {q}.", "there are two small dots at the {q}.")
SPLIT_SENTENCES = ("a black dot is at the {q}.", "there is a black dot at the {q}.")  # where, never whether split
# Question types whose answer no text states (by design, above): text-only passages never ask them.
UNSAID: tuple[str, ...] = ("pair", "split")
CONTROL_MENTION_PROB = 0.5


def qa_line(question: str, answer: str) -> str:
    return QA_TEMPLATE.format(question=question, answer=answer)


def qa_prompt(question: str) -> str:
    """The part of ``qa_line`` before the answer (``Question: .. Answer:``): a prompt, and a prefix of the line."""
    return QA_TEMPLATE.split(" {answer}")[0].format(question=question)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.random() * len(options))]  # rng.random is ~3x faster than rng.integers


def _with_article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _object_phrase(o: SceneObject, rng: np.random.Generator | None, size: bool, position: bool) -> str:
    """'a large red circle on the left'; canonical words when ``rng`` is None, random synonyms otherwise."""
    first = (lambda opts: opts[0]) if rng is None else (lambda opts: _pick(rng, opts))
    words = ([first(SIZE_WORDS[o.size])] if size else []) + [o.colour, first(SHAPE_WORDS[o.shape])]
    phrase = _with_article(" ".join(words))
    return phrase + " " + first(POSITION_PHRASES[o.position]) if position else phrase


def _caption(scene: Scene, rng: np.random.Generator, template: str, full: bool) -> str:
    """One caption. ``full`` forces size and position for every object and the glyph sentence (used when the text
    must carry every answer)."""
    size = full or rng.random() < 0.8
    position = full or rng.random() < 0.7
    order = rng.permutation(len(scene.objects))
    things = _join([_object_phrase(scene.objects[i], rng, size, position) for i in order])
    n = len(scene.objects)
    text = template.format(
        things=things, n=NUMBER_WORDS[n], be="is" if n == 1 else "are", noun="object" if n == 1 else "objects"
    )
    if scene.glyph is not None and (full or rng.random() < GLYPH_MENTION_PROB):
        text += " " + _pick(rng, GLYPH_SENTENCES).format(g=scene.glyph)
    if scene.pattern is not None and (full or rng.random() < CONTROL_MENTION_PROB):
        text += " " + _pick(rng, PATTERN_SENTENCES[scene.pattern])
    if scene.dot_column is not None and (full or rng.random() < CONTROL_MENTION_PROB):
        text += " " + _pick(rng, DOT_SENTENCES).format(c=COLUMN_WORDS[scene.dot_column])
    if scene.pair is not None and (full or rng.random() < CONTROL_MENTION_PROB):
        text += " " + _pick(rng, PAIR_SENTENCES).format(q=QUADRANT_WORDS[scene.pair_quadrant])
    if scene.split is not None and (full or rng.random() < CONTROL_MENTION_PROB):
        text += " " + _pick(rng, SPLIT_SENTENCES).format(q=QUADRANT_WORDS[scene.split_quadrant])
    return text


def captions(scene: Scene, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct captions; each uses a different template while templates last."""
    out: list[str] = []
    templates = [CAPTION_TEMPLATES[i] for i in rng.permutation(len(CAPTION_TEMPLATES))]
    for attempt in range(50 * n):
        if len(out) == n:
            break
        text = _caption(scene, rng, templates[attempt % len(templates)], full=False)
        if text not in out:
            out.append(text)
    if len(out) < n:
        raise ValueError(f"could not make {n} distinct captions for {scene}")
    return out


def dense_caption(scene: Scene) -> str:
    n = len(scene.objects)
    parts = [f"there {'is' if n == 1 else 'are'} {n} object{'' if n == 1 else 's'} on a light grey background."]
    parts += [_object_phrase(o, None, size=True, position=True) + "." for o in scene.objects]
    if scene.glyph is not None:
        parts.append(DENSE_GLYPH_SENTENCE.format(g=scene.glyph))
    if scene.pattern is not None:
        parts.append(PATTERN_SENTENCES[scene.pattern][0])
    if scene.dot_column is not None:
        parts.append(DOT_SENTENCES[0].format(c=COLUMN_WORDS[scene.dot_column]))
    if scene.pair is not None:
        parts.append(PAIR_SENTENCES[0].format(q=QUADRANT_WORDS[scene.pair_quadrant]))
    if scene.split is not None:
        parts.append(SPLIT_SENTENCES[0].format(q=QUADRANT_WORDS[scene.split_quadrant]))
    return " ".join(parts)


def questions(scene: Scene, rng: np.random.Generator) -> list[dict[str, str]]:
    """About seven questions: count, glyph and each control once (those the world has), colour / shape / position
    once (sometimes twice) when an unambiguous referent exists. Listed in QUESTION_TYPES order."""
    objs = scene.objects

    def unique(key: Callable[[SceneObject], object]) -> list[SceneObject]:
        return [o for o in objs if sum(key(p) == key(o) for p in objs) == 1]

    def some(candidates: list[SceneObject]) -> list[SceneObject]:
        k = min(len(candidates), 1 + int(rng.random() < EXTRA_QA_PROB))
        return [candidates[i] for i in sorted(rng.permutation(len(candidates))[:k])]

    qa = [
        {"question": QUESTION_TEMPLATES["colour"].format(shape=o.shape), "answer": o.colour, "type": "colour"}
        for o in some(unique(lambda o: o.shape))
    ]
    qa += [
        {"question": QUESTION_TEMPLATES["shape"].format(colour=o.colour), "answer": o.shape, "type": "shape"}
        for o in some(unique(lambda o: o.colour))
    ]
    qa.append({"question": QUESTION_TEMPLATES["count"], "answer": str(len(objs)), "type": "count"})
    qa += [
        {"question": QUESTION_TEMPLATES["position"].format(colour=o.colour, shape=o.shape), "answer": o.position,
         "type": "position"}
        for o in some(unique(lambda o: (o.colour, o.shape)))
    ]  # fmt: skip
    if scene.glyph is not None:
        qa.append({"question": QUESTION_TEMPLATES["glyph"], "answer": scene.glyph, "type": "glyph"})
    if scene.pattern is not None:
        qa.append({"question": QUESTION_TEMPLATES["pattern"], "answer": scene.pattern, "type": "pattern"})
    if scene.dot_column is not None:
        qa.append({"question": QUESTION_TEMPLATES["dot"], "answer": COLUMN_WORDS[scene.dot_column], "type": "dot"})
    if scene.pair is not None:
        qa.append({"question": QUESTION_TEMPLATES["pair"], "answer": "yes" if scene.pair_together else "no",
                   "type": "pair"})  # fmt: skip
    if scene.split is not None:
        qa.append({"question": QUESTION_TEMPLATES["split"], "answer": "yes" if scene.split_across else "no",
                   "type": "split"})  # fmt: skip
    return qa


def describe(scene: Scene, caption_rng: np.random.Generator, n_captions: int, qa_rng: np.random.Generator) -> dict:
    """The text half of one image sample (everything but the id and the pixels). Captions and questions use separate
    generators so that changing ``n_captions`` leaves the questions unchanged."""
    return {
        **scene.to_dict(),
        "captions": captions(scene, caption_rng, n_captions),
        "dense_caption": dense_caption(scene),
        "qa": questions(scene, qa_rng),
    }


def text_passage(scene: Scene, rng: np.random.Generator) -> str:
    """A scene in words followed by 1-3 QA lines that the words alone answer (the 'text-only' share of the mixture).
    The description is the dense caption or a full caption, both of which name every object, position and the glyph.
    """
    if rng.random() < 0.5:
        text = dense_caption(scene)
    else:
        text = _caption(scene, rng, CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))], full=True)
    qa = [q for q in questions(scene, rng) if q["type"] not in UNSAID]
    k = int(rng.integers(1, min(3, len(qa)) + 1))
    return " ".join([text] + [qa_line(qa[i]["question"], qa[i]["answer"]) for i in rng.permutation(len(qa))[:k]])


def make_docs(
    samples: list[dict], n_docs: int, rng_for: Callable[[int], np.random.Generator], min_images: int, max_images: int
) -> list[dict]:
    """Interleaved documents in the OBELICS layout: parallel ``images`` / ``texts`` lists, image then its text.

    A theme is a question type (e.g. "glyph"): every image of the document has a question of that type, and each
    image's text is such a question with its answer (with probability DOC_QA_PROB) or one of its captions. Answers
    differ from image to image, so every answer must be read from its own image; only the *kind* of question carries
    over between chunks. (World v1 themed documents by type *and* answer: a model then copied the first answer and
    learned little from the images.) The type is drawn uniformly among those with enough images.
    """
    buckets: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))  # type -> {image: QA lines}
    for s in samples:
        for q in s["qa"]:
            buckets[q["type"]][s["id"]].append(qa_line(q["question"], q["answer"]))
    by_id = {s["id"]: s for s in samples}
    members_of = {t: sorted(ids.items()) for t, ids in buckets.items()}  # once, not per document (50 s -> 1 s)
    docs = []
    for doc_id in range(n_docs):
        rng = rng_for(doc_id)
        k = int(rng.integers(min_images, max_images + 1))
        types = sorted(t for t, members in members_of.items() if len(members) >= k)
        if not types:
            k = min_images
            types = sorted(t for t, members in members_of.items() if len(members) >= k)
        if not types:
            raise ValueError(f"no question type has {min_images} images among {len(samples)} samples: too few images")
        qtype = types[int(rng.integers(len(types)))]
        members = members_of[qtype]
        images: list[int | None] = []
        texts: list[str | None] = []
        for i in rng.choice(len(members), size=k, replace=False):
            image_id, lines = members[int(i)]
            line = lines[int(rng.integers(len(lines)))]
            if rng.random() >= DOC_QA_PROB:
                caps = by_id[image_id]["captions"]
                line = caps[int(rng.integers(len(caps)))]
            images += [image_id, None]
            texts += [None, line]
        docs.append({"id": doc_id, "theme": qtype, "images": images, "texts": texts})
    return docs


# -- hard negatives (NegCLIP) ----------------------------------------------------------------------------------------
# Word classes a hard-negative caption may alter. Digits count only after "number " / "small " (the glyph sentences):
# the dense caption also writes the object count as a digit, which is not the glyph.
_NEGATABLE: dict[str, tuple[str, ...]] = {
    "shape": tuple(w for words in SHAPE_WORDS.values() for w in words),
    "colour": ("red", "green", "blue", "yellow", "purple", "orange"),
    "position": tuple(p for phrases in POSITION_PHRASES.values() for p in phrases),
    "glyph": tuple("0123456789"),
}
_CANONICAL = {
    "shape": {w: s for s, words in SHAPE_WORDS.items() for w in words},
    "position": {p: pos for pos, phrases in POSITION_PHRASES.items() for p in phrases},
}


def _spans(text: str, kind: str) -> list[tuple[int, int]]:
    import re

    if kind == "glyph":
        return [m.span(1) for m in re.finditer(r"(?:number|small) (\d)\b", text)]
    words = sorted(_NEGATABLE[kind], key=len, reverse=True)  # "top left" before "top"
    return [m.span() for m in re.finditer(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", text)]


def hard_negative(text: str, rng: np.random.Generator) -> str | None:
    """``text`` with ONE shape, colour, position or glyph replaced by a different value of the same kind, or None
    when the text names none of them.

    NegCLIP (Yuksekgonul et al., ICLR 2023, "When and why vision-language models behave like bags-of-words") adds
    such captions as extra negatives in the contrastive batch. In this world colour and count already tell any two
    captions of a random batch apart, so plain CLIP never needs to encode shape or the glyph; a negative that differs
    only in one of them makes that detail worth encoding. The kind is drawn uniformly among those the text mentions.
    """
    kinds = [k for k in _NEGATABLE if _spans(text, k)]
    if not kinds:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    spans = _spans(text, kind)
    a, b = spans[int(rng.integers(len(spans)))]
    old = text[a:b]
    canon = _CANONICAL.get(kind, {})
    choices = [w for w in _NEGATABLE[kind] if canon.get(w, w) != canon.get(old, old)]
    return text[:a] + choices[int(rng.integers(len(choices)))] + text[b:]
