"""The VLM: image encoder -> connector -> causal LM, with visual tokens spliced in at image positions.

Sequence layout (as in MM1 / OpenFlamingo-style interleaving): every image in a sequence is represented by ``M``
consecutive ``<image>`` placeholder ids, where ``M = connector.num_tokens``. ``embed`` replaces those positions, in
reading order, with the connector's output, so any number of images per sequence (interleaved documents, few-shot
prompts) works with one code path and no per-LLM copies. Labels at image positions are ignored by the loss.

Shapes: images ``[n_img, H, W, 3]`` uint8 -> encoder ``[n_img, N, D_enc]`` -> connector ``[n_img, M, d]``;
``input_ids [B, T]`` with ``n_img * M`` placeholders -> ``inputs_embeds [B, T, d]``.

A training forward without images (text-only data, or a process's share of a global batch that holds none) still
runs the connector, on one blank image whose tokens are spliced in at no position: see ``forward``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.models.connectors.base import Connector
from harness.models.encoders.base import FeatureMapEncoder, ImageEncoder
from harness.models.llm.base import LanguageModel
from harness.models.llm.tokenizer import IMAGE

PARTS = ("encoder", "connector", "llm")


@dataclass
class VisualInputs:
    """What the connector consumes for a batch of images: low-res features and, for mining, high-res maps."""

    feats: Tensor  # [n_img, N, D_enc]
    hr: list[Tensor] | None = None  # per stage [n_img, C_i, H_i, W_i]


class VLM(nn.Module):
    def __init__(self, encoder: ImageEncoder, connector: Connector, llm: LanguageModel,
                 hr_encoder: FeatureMapEncoder | None = None):
        super().__init__()
        if connector.needs_hr and hr_encoder is None:
            raise ValueError(f"connector '{connector.cfg.name}' needs a high-resolution encoder")
        self.encoder = encoder
        self.hr_encoder = hr_encoder if connector.needs_hr else None
        self.connector = connector
        self.lm = llm.model
        self.tokenizer = llm.tokenizer
        self.image_token_id = llm.token_id(IMAGE)
        self.num_visual_tokens = connector.num_tokens
        self._blank: VisualInputs | None = None  # connector inputs of one blank image (frozen encoders), see forward
        # Parts whose weights no longer equal the built ones (a stage trained them, or weights.pt restored them).
        # A frozen encoder that was trained earlier must not read the feature cache: that holds the pre-trained
        # encoder's outputs (harness.data.features). requires_grad says only what trains *now*.
        self.trained_parts: set[str] = set()

    # -- freezing ----------------------------------------------------------------------------------------------
    def set_trainable(self, parts: list[str]) -> None:
        """Freeze everything, then unfreeze the named parts (a training stage's ``trainable`` list)."""
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown trainable part(s) {unknown}; valid: {list(PARTS)}")
        self.requires_grad_(False)
        if "encoder" in parts:
            self.encoder.requires_grad_(True)
        if "connector" in parts:
            for p in self.connector.trainable_parameters():
                p.requires_grad_(True)
        if "llm" in parts:
            self.lm.requires_grad_(True)

    def param_counts(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0
        out = {"encoder": count(self.encoder), "hr_encoder": count(self.hr_encoder),
               "connector": count(self.connector), "llm": count(self.lm)}
        out["total"] = sum(out.values())
        out["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return out

    # -- images -> visual tokens -------------------------------------------------------------------------------
    def encode_images(self, images: Tensor) -> VisualInputs:
        """uint8 images ``[n_img, H, W, 3]`` -> connector inputs. No grad unless the encoder trains."""
        train_enc = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(train_enc and torch.is_grad_enabled()):
            feats = self.encoder.encode(images)
        hr = None
        if self.hr_encoder is not None:
            with torch.no_grad():  # Mini-Gemini keeps both vision encoders frozen in every stage
                hr = self.hr_encoder.encode_maps(images)
        return VisualInputs(feats, hr)

    def visual_tokens(self, vis: VisualInputs) -> Tensor:
        """``[n_img, N, D_enc]`` -> ``[n_img, M, d]``."""
        return self.connector(vis.feats, vis.hr)

    def blank_inputs(self) -> VisualInputs:
        """Connector inputs ``[1, N, D_enc]`` (and maps) of one all-black image. Their values never reach the loss;
        only the graph does. With frozen encoders they are computed once; a trained encoder runs on every call, so
        its parameters take part in the backward too."""
        train_enc = any(p.requires_grad for p in self.encoder.parameters())
        dev = next(self.encoder.parameters()).device
        if train_enc or self._blank is None or self._blank.feats.device != dev:
            r = self.encoder.resolution
            vis = self.encode_images(torch.zeros(1, r, r, 3, dtype=torch.uint8))
            if train_enc:
                return vis
            self._blank = vis
        return self._blank

    def embed(self, input_ids: Tensor, visual: Tensor | None, blank: bool = False) -> Tensor:
        """Token embeddings with the ``<image>`` placeholders replaced, in order, by ``visual [n_img, M, d]``.
        ``blank``: ``visual`` holds a blank image's tokens for a sequence without image slots; they are scattered
        into no position, so the embeddings are unchanged and the gradient reaching ``visual`` is exactly zero."""
        emb = self.lm.get_input_embeddings()(input_ids)
        mask = input_ids == self.image_token_id
        n_slots = int(mask.sum())
        n_vis = 0 if visual is None or blank else visual.shape[0] * visual.shape[1]
        if n_slots != n_vis:
            raise ValueError(f"sequence has {n_slots} image slots but {n_vis} visual tokens were given "
                             f"({self.num_visual_tokens} per image)")
        if visual is None:
            return emb
        return emb.masked_scatter(mask.unsqueeze(-1), visual.reshape(-1, emb.shape[-1]).to(emb.dtype))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None,
                vis: VisualInputs | None = None, position_ids: Tensor | None = None,
                num_items_in_batch: int | None = None):
        """``input_ids [B, T]`` (``n_img * M`` image slots), ``attention_mask [B, T]`` or None with ``position_ids
        [B, T]`` restarting at 0 for each packed sequence (harness.data.sequences.pack) -> the LM's output."""
        has_images = vis is not None and vis.feats.shape[0] > 0
        # A training forward without images runs the connector on a blank image and scatters its tokens into no
        # position. The loss is unchanged and its gradient for the connector (and a trained encoder) is exactly
        # zero, that batch's true gradient, but the graph reaches every trainable parameter through the same ops as
        # a batch with images. Without it: connector-only training has no grad path (backward raises); DDP's reducer
        # waits for gradients an image-free rank never produces (an error at the next step, or a hang); FSDP2's
        # all-gathers and reduce-scatters (the connector in the forward, the frozen decoder layers gathered again in
        # a backward that runs towards the connector) fall out of step across ranks. LLaVA adds 0 x a dummy image's
        # features to the embeddings instead; an empty scatter is the image path's own op, and a non-finite blank
        # feature cannot leak into the loss (0 x inf is NaN). The price: a connector-only step without images
        # backpropagates through the frozen LLM, as a step with images does. The optimizer still steps on the zero
        # gradient, as on any such batch, so one process and N processes stay the same computation. Inference
        # (eval mode or no grad) skips it.
        blank = not has_images and self.training and torch.is_grad_enabled()
        if blank:
            vis = self.blank_inputs()
        visual = self.visual_tokens(vis) if has_images or blank else None
        emb = self.embed(input_ids, visual, blank=blank)
        # num_items_in_batch: the loss becomes sum / num_items (gradient accumulation, multi-process global batches)
        extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        # No KV cache: this is a training / scoring pass, and transformers detects packed rows (position_ids that
        # restart, no attention mask) only without one.
        return self.lm(inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids, labels=labels,
                       use_cache=False, **extra)
