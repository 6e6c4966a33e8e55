"""The generate calls of the hf runner, run on its engine thread: the benchmark's greedy
generation of exactly ``n`` tokens (EOS masked until then), the evals' greedy completion that
stops at the end of the model's turn, and the streamer that hands tokens to another thread.

Imports torch and transformers only inside the functions.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig, PreTrainedModel


def _greedy(model: PreTrainedModel, n: int, exact: bool, eos: Any) -> GenerationConfig:
    """Greedy settings for ``n`` new tokens; ``exact`` masks EOS until the n-th token."""
    from transformers import GenerationConfig

    base = model.generation_config
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=n,
        min_new_tokens=n if exact else 0,
        bos_token_id=base.bos_token_id,
        eos_token_id=eos,
        pad_token_id=base.pad_token_id,
        use_cache=True,  # a new cache per call: the prompt is always prefilled
    )


def generate_exact(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    n: int,
    streamer: Any = None,
) -> torch.Tensor:
    """One greedy generate call on left-padded prompts that never stops early; returns prompt
    + new ids."""
    import torch

    base = model.generation_config
    config = _greedy(model, n, exact=True, eos=base.eos_token_id)
    width = max(len(p) for p in prompts)
    ids = [[base.pad_token_id] * (width - len(p)) + list(p) for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    with torch.inference_mode():
        out: torch.Tensor = model.generate(
            input_ids=torch.tensor(ids, dtype=torch.long, device=model.device),
            attention_mask=torch.tensor(mask, dtype=torch.long, device=model.device),
            generation_config=config,
            streamer=streamer,
        )
    return out


def generate_until_stop(
    model: PreTrainedModel, prompt: Sequence[int], n: int, stop_ids: Collection[int]
) -> tuple[list[int], bool]:
    """Greedy continuation of one prompt until a token of ``stop_ids`` or ``n`` new tokens.

    Returns the new ids without the stop token, and whether one ended it. llama.cpp's
    completion usage counts the same way (its end-of-generation token is neither appended to
    the completion nor counted), so ``len(ids)`` matches its ``completion_tokens``."""
    import torch

    config = _greedy(model, n, exact=False, eos=sorted(stop_ids))
    with torch.inference_mode():
        x = torch.tensor([list(prompt)], dtype=torch.long, device=model.device)
        out: torch.Tensor = model.generate(
            input_ids=x, attention_mask=torch.ones_like(x), generation_config=config
        )
    new = [int(t) for t in out[0, len(prompt) :].tolist()]
    if new and new[-1] in stop_ids:
        return new[:-1], True
    return new, False


class Cancelled(Exception):
    """Raised inside generate when the consumer of ``stream`` stopped early."""


@cache
def queue_streamer() -> type[Any]:
    """A BaseStreamer that hands each chunk of new ids to the consuming thread. Built on first
    use so that importing this module never imports transformers."""
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):  # type: ignore[misc]  # transformers is untyped here
        def __init__(self, sink: queue.Queue[Any], cancel: threading.Event) -> None:
            self.sink = sink
            self.cancel = cancel
            self.prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if self.cancel.is_set():
                raise Cancelled
            if not self.prompt_seen:  # generate's first put() is the prompt
                self.prompt_seen = True
                return
            self.sink.put(tuple(int(t) for t in value.reshape(-1).tolist()))

        def end(self) -> None:
            pass  # the end is marked when the generate job finishes, with or without error

    return QueueStreamer
