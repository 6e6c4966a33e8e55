"""Hugging Face transformers + torch in-process, on an HF checkpoint directory.

The cell's method and precision decide how the checkpoint is loaded (see ``runners.hf_quant``):
cast to a float dtype, quantized at load (torchao, bitsandbytes) or loaded pre-quantized (GPTQ,
AWQ, compressed-tensors). Generation is greedy with exactly ``max_new_tokens`` new tokens
(EOS masked until then), on the raw prompt ids, from a fresh KV cache every call; ``complete``
(quality evals) is greedy too but stops at the end of the model's turn. The generate calls
themselves are in ``runners.hf_generate``.
"""

from __future__ import annotations

import gc
import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from runners.base import (
    MIB,
    Capabilities,
    Completion,
    Engine,
    LoadSpec,
    MemoryPolicy,
    ModelFormat,
    Request,
    RunnerConfig,
)
from runners.hf_generate import generate_exact, generate_until_stop, queue_streamer
from runners.hf_quant import (
    CPU_INT4_NOTE,
    METHOD_PACKAGES,
    PREQUANTIZED,
    check_group_size,
    check_packages,
    check_prequantized,
    check_runtime,
    check_supported,
    model_dtype,
    no_progress_bar,
    quantization_config,
    weight_classes,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["METHOD_PACKAGES", "HFConfig", "HFRunner"]

COMPUTE_DTYPES = ("f32", "bf16", "f16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
GROUP_SIZES = (32, 64, 128, 256)
SETTINGS = {
    "chat_template": "none (raw prompt)",
    "sampling": "greedy",
    # not llama.cpp's behaviour (it samples EOS and goes on), so greedy paths can differ
    "eos": "masked until max_new_tokens",
    "prefix_cache": "off",  # a fresh KV cache for every request
    "eos_mechanism": "min_new_tokens=max_new_tokens (EOS logit masked until the last token)",
    "max_new_tokens": "per request",
    "cache": "fresh KV cache per request",
    "checkpoint_generation_config": "ignored (token ids only)",
}
_END = object()  # the end-of-generation marker in a stream's queue
T = TypeVar("T")


@dataclass
class HFConfig(RunnerConfig):
    name: str = "hf"
    compute_dtype: str = "bf16"  # the non-quantized parts under torchao / bitsandbytes
    group_size: int = 128  # torchao int4 quantization group (input features per scale)
    attn_implementation: str | None = None  # None: transformers' default (sdpa)
    n_threads: int | None = None  # None: the hardware profile's thread count

    def __post_init__(self) -> None:
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"runtime.compute_dtype={self.compute_dtype!r}: choose one of "
                f"{', '.join(COMPUTE_DTYPES)}"
            )
        if self.group_size not in GROUP_SIZES:
            raise ValueError(
                f"runtime.group_size={self.group_size}: choose one of "
                f"{', '.join(map(str, GROUP_SIZES))}"
            )
        if self.attn_implementation not in (None, *ATTN_IMPLEMENTATIONS):
            raise ValueError(
                f"runtime.attn_implementation={self.attn_implementation!r}: choose one of "
                f"{', '.join(ATTN_IMPLEMENTATIONS)} or null"
            )
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"runtime.n_threads={self.n_threads} must be >= 1 or null")

    def engine(self) -> Engine:
        return Engine.transformers

    def model_format(self) -> ModelFormat:
        return ModelFormat.hf

    def memory_policy(self) -> MemoryPolicy:
        # transformers allocates on demand: KV grows with the workload's own tokens; a worker
        # that imported torch + transformers holds 280 MiB before loading (measured: 47-49 MiB
        # base + 232 MiB for the imports on torch 2.13 CPU)
        return MemoryPolicy(
            compute_dtype=self.compute_dtype, host_base_bytes=280 * MIB, load_transient=True
        )

    def required_packages(self, method: str) -> dict[str, str]:
        # a method's library is imported where the model loads: in this worker
        return {p: f"pip install {p}" for p in METHOD_PACKAGES.get(method, ())}


class HFRunner:
    name: ClassVar[str] = "hf"
    Config: ClassVar[type[RunnerConfig]] = HFConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        batching=True,
        logits=True,
        gpu_offload=True,
        max_concurrency=1,
        completion=True,
    )
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors", "accelerate")
    install_hint: ClassVar[str | None] = "pip install .[hf]"

    def __init__(self, config: RunnerConfig, spec: LoadSpec) -> None:
        assert isinstance(config, HFConfig)
        self.config = config
        self.spec = spec
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._quantization = "none"
        self._engine: ThreadPoolExecutor | None = None

    @property
    def threads(self) -> int:
        return self.config.n_threads or self.spec.threads

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn`` on the runner's one engine thread, where every torch call happens.

        ``stream`` must run generate off the caller's thread; doing all torch work on one
        thread keeps torch's CPU (OpenMP) thread pools from competing: generating on a second
        thread after the caller used torch measured 2x slower in bf16 on a 2-core host."""
        if self._engine is None:
            self._engine = ThreadPoolExecutor(1, thread_name_prefix="hf-engine")
        return self._engine.submit(fn, *args)

    def load(self) -> None:
        spec = self.spec
        # every refusal comes before anything is imported or loaded
        check_supported(spec.method, spec.precision, spec.device, self.config.compute_dtype)
        if spec.method in PREQUANTIZED:
            qc = check_prequantized(spec.model_path, spec.method, spec.precision)
            self._quantization = json.dumps(qc, sort_keys=True, default=str)
        if spec.method == "torchao" and spec.precision == "int4":
            check_group_size(spec.model_path, self.config.group_size)
        check_packages(spec.method)
        check_runtime()
        self._submit(self._load).result()

    def _load(self) -> None:
        import torch
        import transformers

        spec, c = self.spec, self.config
        torch.set_num_threads(self.threads)
        kwargs: dict[str, Any] = {
            "dtype": model_dtype(spec.method, spec.precision, c.compute_dtype),
            "device_map": spec.device,
        }
        qc = quantization_config(
            spec.method, spec.precision, spec.device, c.compute_dtype, c.group_size
        )
        if qc is not None:
            kwargs["quantization_config"] = qc
            self._quantization = json.dumps(qc.to_dict(), sort_keys=True, default=str)
        if c.attn_implementation is not None:
            kwargs["attn_implementation"] = c.attn_implementation
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(spec.model_path)
        with no_progress_bar():
            model = transformers.AutoModelForCausalLM.from_pretrained(spec.model_path, **kwargs)
        model.eval()
        # the runner owns every sampling setting: keep only the checkpoint's token ids
        model.generation_config = transformers.GenerationConfig(
            bos_token_id=model.generation_config.bos_token_id,
            eos_token_id=model.generation_config.eos_token_id,
            pad_token_id=self._pad_id(model),
        )
        self._model = model

    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            raise RuntimeError("runner used before load()")
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            raise RuntimeError("runner used before load()")
        return self._tokenizer

    def _pad_id(self, model: PreTrainedModel) -> int:
        if self.tokenizer.pad_token_id is not None:
            return int(self.tokenizer.pad_token_id)
        eos = model.generation_config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        return int(eos) if eos is not None else 0

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=True)]

    def logprobs(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """One forward pass on the engine thread; log-softmax in float32."""
        return self._submit(self._logprobs, self.model, list(ids)).result()

    def _logprobs(self, model: PreTrainedModel, ids: list[int]) -> npt.NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            x = torch.tensor([ids], device=model.device)
            logits = model(input_ids=x, use_cache=False).logits[0].float()
            out: npt.NDArray[np.float32] = torch.log_softmax(logits, dim=-1).cpu().numpy()
        return out

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        """Greedy on the engine thread until a stop id (the checkpoint's EOS ids and the
        tokenizer's EOS: ``<|im_end|>`` for SmolLM2-Instruct) or ``max_new_tokens``. The text
        is decoded without special tokens; ``output_tokens`` leaves out the stop token, as
        llama.cpp's usage does. llama.cpp also stops at the other tokens its vocabulary marks
        end-of-generation by name (SmolLM2: ``<|endoftext|>``, ``<reponame>``); these do not
        stop here."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        ids = self._chat_ids(prompt) if chat else self.tokenize(prompt)
        job = self._submit(generate_until_stop, self.model, ids, max_new_tokens, self._stop_ids())
        new, stopped = job.result()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Completion(str(text), len(ids), len(new), "stop" if stopped else "length")

    def _chat_ids(self, prompt: str) -> list[int]:
        """The prompt as one user message in the tokenizer's own template, with the generation
        prompt; the template writes any BOS itself, so none is added on top."""
        if self.chat_template() is None:
            raise ValueError("the model has no chat template; set eval.chat_template=false")
        messages = [{"role": "user", "content": prompt}]
        encoded: Any = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return [int(t) for t in encoded["input_ids"]]

    def _stop_ids(self) -> frozenset[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return frozenset(int(t) for t in ids)

    def chat_template(self) -> str | None:
        template = self.tokenizer.chat_template
        return template if isinstance(template, str) and template else None

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        n = request.max_new_tokens
        model = self.model  # before load(): fails here, not on the engine thread
        sink: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()
        streamer = queue_streamer()(sink, cancel)
        job = self._submit(generate_exact, model, [request.prompt_ids], n, streamer)
        job.add_done_callback(lambda _: sink.put(_END))  # after the last token or an error
        produced = 0
        try:
            while (item := sink.get()) is not _END:
                produced += len(item)
                yield item
        finally:
            cancel.set()  # a consumer that stops early aborts generate at its next token
            wait([job])
        job.result()  # re-raises what generate raised
        if produced != n:
            raise RuntimeError(f"generate produced {produced} tokens, expected exactly {n}")

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        if not batch:
            return []
        n = max(r.max_new_tokens for r in batch)
        rows = self._submit(self._generate_rows, [r.prompt_ids for r in batch], n).result()
        if any(len(row) != n for row in rows):
            raise RuntimeError(f"generate produced {[len(r) for r in rows]} tokens, expected {n}")
        return [row[: r.max_new_tokens] for row, r in zip(rows, batch, strict=True)]

    def _generate_rows(self, prompts: Sequence[Sequence[int]], n: int) -> list[list[int]]:
        out = generate_exact(self.model, prompts, n)
        width = out.shape[1] - n
        rows = [[int(t) for t in row[width:].tolist()] for row in out]
        if self.spec.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return rows

    def versions(self) -> dict[str, str]:
        import torch
        import transformers

        spec, model = self.spec, self.model
        info = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "hf.device": spec.device,
            "hf.dtype": str(model.dtype).removeprefix("torch."),
            "hf.method": f"{spec.method}/{spec.precision}",
            "hf.quantization_config": self._quantization,
            "hf.weight_classes": weight_classes(model),
            "hf.attn_implementation": str(model.config._attn_implementation),
            "hf.torch_threads": str(torch.get_num_threads()),
        }
        for dist in METHOD_PACKAGES[spec.method]:
            info[dist] = metadata.version(dist)
        if spec.method == "torchao" and spec.precision == "int4" and spec.device == "cpu":
            info["hf.note"] = CPU_INT4_NOTE
        if spec.device == "cuda":
            info["cuda"] = str(torch.version.cuda)
            info["gpu"] = torch.cuda.get_device_name()
        return info

    def generation_settings(self) -> dict[str, str]:
        tok = self.tokenizer
        ids = tok.encode("Hello", add_special_tokens=True)
        added = [t for t in ids if t in set(tok.all_special_ids)]
        bos = tok.bos_token_id
        return {
            **SETTINGS,
            "add_special_tokens": "True",
            "special_tokens": "bos added" if bos is not None and ids[:1] == [bos] else "none added",
            "special_token_ids": str(added),
            "tokenizer": f"transformers {type(tok).__name__}",
        }

    def counters(self) -> dict[str, float]:
        """The torch CUDA allocator's peaks since load (gauges); nothing on CPU."""
        if self.spec.device != "cuda" or self._model is None:
            return {}
        import torch

        return {
            "torch_cuda_max_allocated_peak_bytes": float(torch.cuda.max_memory_allocated()),
            "torch_cuda_max_reserved_peak_bytes": float(torch.cuda.max_memory_reserved()),
        }

    def close(self) -> None:
        if self._engine is None and self._model is None:
            return
        self._model = None
        self._tokenizer = None
        if self._engine is not None:
            self._engine.shutdown(wait=True)
            self._engine = None
        gc.collect()
        if self.spec.device == "cuda":
            import torch

            torch.cuda.empty_cache()
