"""MM1's published numbers and statements, as reference data kept apart from our measurements.

Source: ``docs/mm1_reference.md`` (MM1, McKinzie et al., arXiv 2403.09611), section given per study. Every
entry carries that document's confidence tag. Its status line says no value in Tables 1-3 or Figures 4-5 has been
checked against the paper PDF, so every number here is flagged ``unconfirmed``; only quoted paper wording ([P])
is not. These tables are rendered in their own section ("paper"), never in a column beside "this run": MM1 averages
eight benchmarks with billion-parameter models, our runs score two tasks on a toy world, so only the direction and
ordering of effects can be compared, never the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

TAGS = {
    "P": "paper wording, quoted",
    "S2": "two secondary sources agree",
    "S": "one secondary source",
    "R": "recalled, not found in any source",
}
SOURCE = "MM1 (arXiv 2403.09611), via docs/mm1_reference.md"


def confidence(tag: str) -> str:
    """``S2 (unconfirmed: two secondary sources agree)``; paper wording is the only confirmed kind."""
    return f"{tag} ({'' if tag == 'P' else 'unconfirmed: '}{TAGS[tag]})"


@dataclass(frozen=True)
class PaperRef:
    source: str  # paper table/figure and the reference-document section it was taken from
    rows: tuple[dict, ...] = ()  # the paper's own layout, one dict per row, each with a "tag"
    notes: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (statement, tag)

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(list(self.rows))
        if df.empty:
            return df
        return df.assign(confidence=df.pop("tag").map(confidence))

    def notes_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"statement": s, "confidence": confidence(t)} for s, t in self.notes], columns=["statement", "confidence"]
        )


_ENC = "Image resolution has the highest impact, followed by model size and training data composition."
_CONN = "Number of visual tokens and image resolution matters most, while the type of VL connector has little effect."
_INTERLEAVED = (
    "Interleaved data is instrumental for few-shot and text-only performance, while captioning data lifts zero-shot "
    "performance."
)
_MIXTURE = (
    "Careful mixture of image and text data can yield optimal multimodal performance and retain strong text "
    "performance."
)

TABLE1 = PaperRef(
    source=f"{SOURCE} §1.2, Table 1 (2.9B LLM; mean of 8 captioning/VQA tasks)",
    rows=tuple(
        {
            "loss": loss,
            "encoder": enc,
            "res": res,
            "pretrain data": data,
            "0-shot": z,
            "4-shot": f,
            "8-shot": e,
            "tag": tag,
        }
        for loss, enc, res, data, z, f, e, tag in (
            ("Recon. (AIM600M)", "ViT/600M", 224, "DFN-2B", 36.6, 56.6, 60.7, "S"),
            ("Recon. (AIM1B)", "ViT/1B", 224, "DFN-2B", 37.9, 59.5, 63.3, "S"),
            ("Recon. (AIM3B)", "ViT/3B", 224, "DFN-2B", 38.9, 60.9, 64.9, "S"),
            ("CLIP (DFN+VeCap)", "ViT-L", 224, "DFN-5B+VeCap", 36.9, 58.7, 62.2, "S"),
            ("CLIP (DFN)", "ViT-H", 224, "DFN-5B", 37.5, 57.0, 61.4, "R"),
            ("CLIP (DFN+VeCap)", "ViT-H", 224, "DFN-5B+VeCap", 37.5, 60.0, 63.6, "S"),
            ("CLIP (DFN+VeCap)", "ViT-L", 336, "DFN-5B+VeCap", 39.9, 62.4, 66.0, "S"),
            ("CLIP (DFN+VeCap)", "ViT-H", 336, "DFN-5B+VeCap", 40.5, 62.6, 66.3, "S"),
            ("CLIP (OpenAI)", "ViT-L", 336, "ImageText-400M", 39.3, 62.2, 66.1, "R"),
            ("CLIP (DFN)", "ViT-H", 378, "DFN-5B", 40.9, 62.5, 66.4, "S"),
        )
    ),
    notes=(
        (f'"{_ENC}" (§3.2)', "P"),
        ("224->336 px is about +3 points on every metric (ViT-L: +3.0/+3.7/+3.8)", "S2"),
        ("ViT-L -> ViT-H (2x parameters) usually < 1 point; adding VeCap-300M > 1 point few-shot", "S2"),
        ("Row order of the table is a best guess", "R"),
    ),
)

FIGURE4 = PaperRef(
    source=f"{SOURCE} §1.3, Figure 4 (1.2B LLM; {{Avg Pool, Att Pool, C-Abstractor}} x {{224, 336}} px x {{64, 144}} "
    "tokens; 0/4/8-shot panels)",
    notes=(
        (f'"{_CONN}" (§3.2)', "P"),
        ("Per-cell values are not recoverable from any text", "R"),
        ("336 px / 144 tokens best for every connector, 224 px / 64 tokens worst", "R"),
        ("64->144 tokens and 224->336 px each give a few points", "R"),
        ("Connector spread at fixed (res, tokens) <= 1 point, no consistent winner", "R"),
    ),
)

CONNECTORS = PaperRef(
    source=f"{SOURCE} §1.3 (connector lesson)",
    notes=(
        ('"different architectural designs do not appear to conclusively produce stronger models" (p.7)', "P"),
        ('"The actual architecture seems to matter less, we opt for C-Abstractor." (§3.4)', "P"),
    ),
)

FIGURE5A = PaperRef(
    source=f"{SOURCE} §1.4, Figure 5a (caption vs interleaved, no text-only data; 1.2B LLM, 200k steps)",
    rows=tuple(
        {"caption/interleaved": r, "shots": k, "value": v, "tag": t}
        for r, k, v, t in (
            ("0/100", 0, "25.8", "S2"),
            ("100/0", 0, "39.3", "S2"),
            (">= 50% interleaved", 4, "> 58", "S"),
            (">= 50% interleaved", 8, "> 61", "S2"),
            ("100/0", 4, "43.7", "R"),
            ("100/0", 8, "~45", "S"),
        )
    ),
    notes=(
        (f'"{_INTERLEAVED}" (§3.3)', "P"),
        ("Ratios plotted: 100/0, 66/33, 50/50, 33/66, 0/100", "R"),
        ("Interleaved data also raises TextCore (text-only tasks)", "S2"),
    ),
)

FIGURE5B = PaperRef(
    source=f"{SOURCE} §1.4, Figure 5b (text-only data added to caption or interleaved data)",
    notes=(
        ('"Text-only data helps with few-shot and text-only performance." (§3.3)', "P"),
        ("Adding text-only data helps few-shot when added to captions", "S2"),
        ("Added to interleaved data: small multimodal drop, TextCore up", "S2"),
    ),
)

FIGURE5C = PaperRef(
    source=f"{SOURCE} §1.4, Figure 5c (image data, caption:interleaved 1:1, vs text-only data)",
    rows=tuple(
        {"image/text": r, "note": n, "tag": t}
        for r, n, t in (
            ("100/0, 91/9, 86/14, 66/33", "x-axis of the figure", "R"),
            ("91/9 (caption:interleaved:text 5:5:1)", "best balance of multimodal and text performance", "S2"),
            ("45/45/10", "final recipe, the rounding of 5:5:1 (§3.4)", "P"),
        )
    ),
    notes=((f'"{_MIXTURE}" (§3.3)', "P"),),
)

FIGURE5D = PaperRef(
    source=f"{SOURCE} §1.4, Figure 5d (with / without VeCap-300M synthetic captions)",
    rows=(
        {
            "setting": "with VeCap vs without",
            "shots": "few-shot (4 and 8, order unconfirmed)",
            "value": "+2.4 and +4.0 absolute",
            "tag": "S2",
        },
    ),
    notes=(
        ('"Synthetic data helps with few-shot learning." (§3.3)', "P"),
        ("VeCap is about 7% of the caption data", "S2"),
    ),
)
