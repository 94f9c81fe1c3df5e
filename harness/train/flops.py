"""Useful FLOPs of a VLM training step, for model FLOPs utilisation (MFU; PaLM, Chowdhery et al. 2022, App. B).

MFU = useful FLOPs per step / (step time x the device's peak FLOP/s). *Useful* means the FLOPs the model needs,
whatever the implementation does: padding is not counted (only real tokens), activation recomputation is not
counted (MFU, not hardware FLOPs utilisation), and packed sequences attend only within themselves, so attention is
counted per sequence, never over a packed row.

Per step, summed over its sequences (``t_s`` tokens each, visual tokens included, ``T = sum t_s``) and images::

    encoder     F_enc x images x {0 from the feature cache | 1 frozen, online | 3 trained}
    connector   F_conn x images x {3 trained | 1 frozen}
    LLM         2 x N_llm x T x {3 trained | 2 frozen, passing gradients to the connector}
    attention   2 x L x d x sum_s t_s^2 x 3

* ``F_enc``, ``F_conn``: forward FLOPs of one image, counted by ``torch.utils.flop_counter`` on the built modules
  (for a ViT that is 2 x params x tokens plus its attention; a count of the real module rather than a formula
  per tower family). A trained module costs 3 forwards (forward, gradients of inputs, gradients of weights).
* ``N_llm``: the LLM's matmul parameters: decoder layers and output head; the input embedding is a lookup (when the
  head is tied to it, its matrix is counted once, as the head). Forward 2 x N per token; backward 4 x N when the LLM
  trains (input and weight gradients), 2 x N when it is frozen but the connector below it trains (input gradients
  only): 6N and 4N, the issue's "about 4 x params" for a frozen LLM.
* Attention: per layer, per sequence of ``t`` tokens, QK^T and the weighted sum of V are ``t^2 x d`` multiply-adds
  each at full context; causal masking halves the useful part: 2 x t^2 x d FLOPs per layer forward. Gradients flow
  through attention in both LLM modes (the connector needs them), so backward doubles it: x3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PEAK_BF16_TFLOPS = {  # dense bf16 tensor-core peaks, no sparsity (vendor datasheets)
    "H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0,
}


@dataclass
class StepFlops:
    encoder: float
    connector: float
    llm: float
    attention: float

    @property
    def total(self) -> float:
        return self.encoder + self.connector + self.llm + self.attention

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"total": self.total}


def step_flops(*, seq_lens: list[int], images: int, llm_params: int, llm_layers: int, llm_width: int,
               llm_trains: bool, encoder_flops_per_image: float, encoder_mode: str, connector_flops_per_image: float,
               connector_trains: bool = True) -> StepFlops:
    """Useful FLOPs of one step (see the module docstring). ``seq_lens``: real tokens of each sequence (packed
    sequences counted one by one); ``encoder_mode``: ``cached`` | ``frozen`` | ``trained``."""
    enc_factor = {"cached": 0, "frozen": 1, "trained": 3}[encoder_mode]
    tokens = sum(seq_lens)
    return StepFlops(
        encoder=enc_factor * encoder_flops_per_image * images,
        connector=(3 if connector_trains else 1) * connector_flops_per_image * images,
        llm=2 * llm_params * tokens * (3 if llm_trains else 2),
        attention=3 * 2 * llm_layers * llm_width * sum(t * t for t in seq_lens),
    )


def llm_matmul_params(lm) -> int:
    """Decoder layers and output head of a transformers causal LM (its input embedding is a lookup)."""
    emb = lm.get_input_embeddings().weight
    head = lm.get_output_embeddings()
    total = sum(p.numel() for p in lm.parameters())  # parameters() yields a tied matrix once
    tied = head is not None and head.weight is emb
    return total if tied else total - emb.numel()


def module_forward_flops(module, *inputs) -> int:
    """Forward FLOPs of ``module(*inputs)`` as counted by ``torch.utils.flop_counter`` (1 multiply-add = 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


def peak_tflops(device) -> tuple[float, str]:
    """The device's dense bf16 peak in TFLOP/s and where it came from; NaN on a CPU (no single peak to quote)."""
    import torch

    if device.type != "cuda":
        return float("nan"), f"no peak known for {device.type}; pass --peak-tflops"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"{key} dense bf16 datasheet peak ({name})"
    return float("nan"), f"no peak known for '{name}'; pass --peak-tflops"
