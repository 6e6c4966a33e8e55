"""Decode roofline: how close a cell's decode came to the memory bandwidth of its hardware.

Decode is memory-bound: each step of a sequence reads every weight once (shared by the
``concurrency`` sequences that step together in a closed loop) and that sequence's whole KV
cache. So, with decode_tok_s the per-sequence decode rate (harness clock):

    bytes_per_step  = weight_bytes + concurrency × kv_bytes_per_token × mean_context
    mean_context    = mean prompt tokens + (mean output tokens − 1) ÷ 2
                      (the KV cache grows by one token per step from the prompt's length)
    achieved_bytes_s = bytes_per_step × decode_tok_s
    efficiency      = achieved_bytes_s ÷ peak_bytes_s

weight_bytes are the tensors as stored in the file that ran (GGUF or safetensors tensor data).
An untied input embedding is counted though decode reads one row of it, so for untied models
this slightly overstates the bytes; a value above 1 means the model or the peak is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Roofline:
    bytes_per_step: float
    achieved_bytes_s: float
    efficiency: float
    mean_context: float


def decode_roofline(
    weight_bytes: float,
    kv_bytes_per_token: float,
    prompt_tokens_mean: float,
    output_tokens_mean: float,
    decode_tok_s: float,
    concurrency: int,
    peak_bytes_s: float,
) -> Roofline:
    if min(weight_bytes, decode_tok_s, peak_bytes_s) <= 0 or concurrency < 1:
        raise ValueError("weights, decode rate, peak bandwidth and concurrency must be > 0")
    context = prompt_tokens_mean + max(output_tokens_mean - 1.0, 0.0) / 2
    per_step = weight_bytes + concurrency * kv_bytes_per_token * context
    achieved = per_step * decode_tok_s
    return Roofline(per_step, achieved, achieved / peak_bytes_s, context)
