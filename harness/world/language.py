"""Every piece of text in the world: captions, dense captions, questions, interleaved documents, text-only passages.

All text is computed from a :class:`Scene`, so every answer is right by construction. The formats below are module
constants because other parts of the harness parse or build the same strings (prompts, metrics, few-shot contexts).

* Captions are short, lowercase, end in ".", and vary template, object order, synonyms and which attributes they
  mention: the ``captions_per_image`` references of one image are distinct phrasings (they are CIDEr references).
* The dense caption is MM1's "visually enriched" synthetic caption: every object with size, colour, shape and
  position, the object count and the glyph, in canonical wording.
* Answers are short lowercase words or digits with no punctuation, so exact match is a fair metric.
* Interleaved documents group images that share one theme (e.g. the same glyph), and most of their texts are
  questions of that theme's type: in-context examples then tell a model *which* question type is being asked, the
  effect the prototype found only in models trained on interleaved data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from harness.world.scene import Scene, SceneObject

QA_TEMPLATE = "Question: {question} Answer: {answer}"
QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "count", "position", "glyph")
QUESTION_TEMPLATES: dict[str, str] = {
    "colour": "what colour is the {shape}?",  # asked only when the shape is unique in the scene
    "shape": "what shape is the {colour} object?",  # only when the colour is unique
    "count": "how many objects are there?",
    "position": "where is the {colour} {shape}?",  # only when the colour-shape pair is unique
    "glyph": "what number is written in the corner?",
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


def qa_line(question: str, answer: str) -> str:
    return QA_TEMPLATE.format(question=question, answer=answer)


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
    return " ".join(parts)


def questions(scene: Scene, rng: np.random.Generator) -> list[dict[str, str]]:
    """About five questions: count and glyph once each, colour / shape / position once (sometimes twice) when an
    unambiguous referent exists. Listed in QUESTION_TYPES order."""
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
    qa = questions(scene, rng)
    k = int(rng.integers(1, min(3, len(qa)) + 1))
    return " ".join([text] + [qa_line(qa[i]["question"], qa[i]["answer"]) for i in rng.permutation(len(qa))[:k]])


def make_docs(
    samples: list[dict], n_docs: int, rng_for: Callable[[int], np.random.Generator], min_images: int, max_images: int
) -> list[dict]:
    """Interleaved documents in the OBELICS layout: parallel ``images`` / ``texts`` lists, image then its text.

    A theme is a (question type, answer) pair such as ("glyph", "7"): every image of the document has a question of
    that type with that answer, and each image's text is that question (with probability DOC_QA_PROB) or one of its
    captions. The question type is drawn uniformly, then the answer among those with enough images.
    """
    buckets: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)  # theme -> {image id: its theme QA line}
    for s in samples:
        for q in s["qa"]:
            buckets[(q["type"], q["answer"])].setdefault(s["id"], qa_line(q["question"], q["answer"]))
    by_id = {s["id"]: s for s in samples}
    docs = []
    for doc_id in range(n_docs):
        rng = rng_for(doc_id)
        k = int(rng.integers(min_images, max_images + 1))
        themes = sorted(t for t, ids in buckets.items() if len(ids) >= k)
        if not themes:
            k = min_images
            themes = sorted(t for t, ids in buckets.items() if len(ids) >= k)
        if not themes:
            raise ValueError(f"no theme has {min_images} images among {len(samples)} samples: too few images")
        types = sorted({t for t, _ in themes})
        qtype = types[int(rng.integers(len(types)))]
        answers = [a for t, a in themes if t == qtype]
        answer = answers[int(rng.integers(len(answers)))]
        members = sorted(buckets[(qtype, answer)].items())
        images: list[int | None] = []
        texts: list[str | None] = []
        for i in rng.choice(len(members), size=k, replace=False):
            image_id, line = members[int(i)]
            if rng.random() >= DOC_QA_PROB:
                caps = by_id[image_id]["captions"]
                line = caps[int(rng.integers(len(caps)))]
            images += [image_id, None]
            texts += [None, line]
        docs.append({"id": doc_id, "theme": f"{qtype}={answer}", "images": images, "texts": texts})
    return docs
