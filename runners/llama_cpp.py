"""llama.cpp in-process through llama-cpp-python (GGUF files from the artifact cache)."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runners.base import (
    MIB,
    Capabilities,
    Completion,
    Engine,
    LoadSpec,
    MemoryPolicy,
    Request,
    RunnerConfig,
)

if TYPE_CHECKING:
    import llama_cpp
    import numpy as np
    import numpy.typing as npt

# llama_ftype values (include/llama.h, `enum llama_ftype`): the precision names the GGUF method
# can produce with llama_model_quantize. IQ1/IQ2/IQ3_XXS need an importance matrix, so they
# are left out until calibration data is wired in.
FTYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q8_0": 7,
    "q5_0": 8,
    "q5_1": 9,
    "q2_k": 10,
    "q3_k_s": 11,
    "q3_k_m": 12,
    "q3_k_l": 13,
    "q4_k_s": 14,
    "q4_k_m": 15,
    "q5_k_s": 16,
    "q5_k_m": 17,
    "q6_k": 18,
    "iq4_nl": 25,
    "iq4_xs": 30,
    "bf16": 32,
}
# KV cache element types (ggml.h, `enum ggml_type`) llama.cpp accepts for type_k / type_v.
KV_TYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
_UNQUANTIZED_KV = frozenset({"f32", "f16", "bf16"})
_OWN_TEMPLATE = "chat_template.default"  # llama-cpp-python's name for tokenizer.chat_template
# What every cell of this runner does to a request (compared across runtimes).
SETTINGS = {
    "chat_template": "none (raw prompt)",
    "sampling": "greedy",
    "eos": "generated and continued past",  # generate() never stops: exactly max_new_tokens
    "prefix_cache": "off",  # reset() before every request: the prompt is always prefilled
}


@dataclass
class LlamaCppConfig(RunnerConfig):
    name: str = "llama_cpp"
    n_ctx: int = 2048
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None  # None: the hardware profile's thread count
    n_gpu_layers: int = 0
    flash_attn: bool = False
    type_k: str = "f16"  # KV cache types (see KV_TYPES); a quantized V needs flash_attn
    type_v: str = "f16"
    offload_kqv: bool = True  # with n_gpu_layers > 0: keep the KV cache on the GPU
    use_mmap: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_ctx < 16:
            raise ValueError(f"runtime.n_ctx={self.n_ctx} is too small (need >= 16)")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"runtime.n_threads={self.n_threads} must be >= 1 or null")
        if self.n_batch < 1 or self.n_ubatch < 1 or self.n_gpu_layers < -1:
            raise ValueError("runtime.n_batch and n_ubatch must be >= 1, n_gpu_layers >= -1")
        for field in ("type_k", "type_v"):
            value = getattr(self, field)
            if value not in KV_TYPES:
                raise ValueError(
                    f"runtime.{field}={value!r} is invalid; choose one of: {', '.join(KV_TYPES)}"
                )
        if self.type_v not in _UNQUANTIZED_KV and not self.flash_attn:
            raise ValueError(
                f"runtime.type_v={self.type_v} (a quantized V cache) needs runtime.flash_attn=true"
            )

    def context_limit(self) -> int | None:
        return self.n_ctx

    def thread_count(self) -> int | None:
        return self.n_threads

    def engine(self) -> Engine:
        return Engine.llama_cpp

    def memory_policy(self) -> MemoryPolicy:
        return llama_cpp_memory(
            self.n_ctx,
            (self.type_k, self.type_v),
            self.n_ubatch,
            self.n_gpu_layers,
            self.flash_attn,
        )


# Resident memory of a worker process before its model loads, measured on the CPU sweeps
# (metric rss_before_load_bytes: 47-49 MiB with llama_cpp).
WORKER_BASE_BYTES = 48 * MIB
# llama.cpp's host-side tables that scale with the vocabulary (token text, scores, sampler
# candidates, the output row): ≈ 0.85 KiB per entry, from the 41 MiB left over after weights
# and KV with SmolLM2's 49,152 tokens on llama-cpp-python 0.3.36.
BYTES_PER_VOCAB = 870.0


def llama_cpp_memory(
    n_ctx: int, kv: tuple[str, str], n_ubatch: int, n_gpu_layers: int, flash_attn: bool
) -> MemoryPolicy:
    """How llama.cpp takes memory, in process or as a server: the KV cache for all ``n_ctx``
    cells at context creation (llama-server's slots share them), f32 activations, a compute
    buffer for a full ubatch of output rows, layers that can stay on the host."""
    return MemoryPolicy(
        context=n_ctx,
        sequences=1,
        kv_dtypes=kv,
        batch_tokens=n_ubatch,
        gpu_layers=n_gpu_layers,
        flash_attn=flash_attn,
        activation_bytes=4.0,  # ggml computes activations in f32
        logit_rows=0,
        offloads_layers=True,
        host_base_bytes=WORKER_BASE_BYTES,
        host_bytes_per_vocab=BYTES_PER_VOCAB,
    )


class GGUFQuantizer:
    """llama.cpp's ``llama_model_quantize`` through llama-cpp-python: method ``gguf``."""

    tool = "llama-cpp-python"

    def type_id(self, precision: str) -> int:
        return FTYPES[precision]

    def quantize(self, source: Path, out: Path, precision: str, threads: int) -> None:
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[precision]
        params.nthread = threads
        rc = llama_cpp.llama_model_quantize(
            str(source).encode(), str(out).encode(), ctypes.byref(params)
        )
        if rc != 0 or not out.is_file():
            raise RuntimeError(f"llama_model_quantize({precision}) failed with code {rc}")


class LlamaCppRunner:
    name: ClassVar[str] = "llama_cpp"
    Config: ClassVar[type[RunnerConfig]] = LlamaCppConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        batching=False,
        logits=True,
        gpu_offload=True,
        completion=True,
    )
    packages: ClassVar[tuple[str, ...]] = ("llama-cpp-python",)
    install_hint: ClassVar[str | None] = None  # a dependency of the harness itself

    def __init__(self, config: RunnerConfig, spec: LoadSpec) -> None:
        assert isinstance(config, LlamaCppConfig)
        self.config = config
        self.spec = spec
        self._llm: llama_cpp.Llama | None = None

    @property
    def threads(self) -> int:
        return self.config.n_threads or self.spec.threads

    def load(self) -> None:
        import llama_cpp

        c = self.config
        self._llm = llama_cpp.Llama(
            model_path=str(self.spec.model_path),
            n_ctx=c.n_ctx,
            n_batch=c.n_batch,
            n_ubatch=c.n_ubatch,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            n_gpu_layers=c.n_gpu_layers,
            flash_attn=c.flash_attn,
            type_k=KV_TYPES[c.type_k],
            type_v=KV_TYPES[c.type_v],
            offload_kqv=c.offload_kqv,
            use_mmap=c.use_mmap,
            seed=c.seed,
            verbose=False,
        )
        # llama-cpp-python maps a template it recognises to a built-in formatter (chatml drops
        # the model's default system prompt); evals use the GGUF's own Jinja template instead.
        if _OWN_TEMPLATE in self._llm._chat_handlers:
            self._llm.chat_format = _OWN_TEMPLATE

    @property
    def llm(self) -> llama_cpp.Llama:
        if self._llm is None:
            raise RuntimeError("runner used before load()")
        return self._llm

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True))

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        llm = self.llm
        total = len(request.prompt_ids) + request.max_new_tokens
        if total > self.config.n_ctx:
            raise ValueError(
                f"prompt ({len(request.prompt_ids)} tokens) + max_new_tokens "
                f"({request.max_new_tokens}) exceeds runtime.n_ctx={self.config.n_ctx}"
            )
        # Without reset() generate() reuses a matching prompt prefix and skips the prefill.
        llm.reset()
        # generate() never stops at EOS by itself (the completion API does), so the length is
        # exactly max_new_tokens; greedy via top_k=1 and temperature 0.
        tokens = llm.generate(
            list(request.prompt_ids), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0
        )
        for produced, token in enumerate(tokens, start=1):
            yield (token,)
            if produced >= request.max_new_tokens:
                tokens.close()
                return

    def logprobs(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Every position's logits from llama_decode with all outputs requested (no
        ``logits_all`` buffer of n_ctx x n_vocab), in n_batch pieces, log-softmaxed."""
        import llama_cpp
        import numpy as np

        llm = self.llm
        if not 0 < len(ids) <= self.config.n_ctx:
            raise ValueError(f"{len(ids)} tokens: need 1..runtime.n_ctx={self.config.n_ctx}")
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # positions restart at 0: drop every cached one
        n_vocab = llm.n_vocab()
        rows = []
        for start in range(0, len(ids), self.config.n_batch):
            piece = list(ids[start : start + self.config.n_batch])
            llm._batch.set_batch(piece, n_past=start, logits_all=True)
            llm._ctx.decode(llm._batch)
            ptr = llama_cpp.llama_get_logits(llm._ctx.ctx)
            rows.append(np.ctypeslib.as_array(ptr, shape=(len(piece), n_vocab)).copy())
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # the next stream() starts from an empty cache too
        logits = np.concatenate(rows).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        out: npt.NDArray[np.float32] = (
            logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        ).astype(np.float32)
        return out

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        return [[t for chunk in self.stream(r) for t in chunk] for r in batch]

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        """Greedy, stops at EOS / end of turn; the completion API shortens ``max_tokens`` to
        what fits in n_ctx and raises when the prompt alone does not fit."""
        llm = self.llm
        llm.reset()
        greedy: dict[str, Any] = {
            "temperature": 0.0,
            "top_k": 1,
            "top_p": 1.0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "max_tokens": max_new_tokens,
            "seed": self.config.seed,
        }
        if chat:
            if self.chat_template() is None:
                raise ValueError("the model has no chat template; set eval.chat_template=false")
            messages: Any = [{"role": "user", "content": prompt}]
            out: Any = llm.create_chat_completion(messages=messages, **greedy)
            text = out["choices"][0]["message"]["content"] or ""
        else:
            out = llm.create_completion(prompt, **greedy)
            text = out["choices"][0]["text"]
        usage = out["usage"]
        finish = out["choices"][0]["finish_reason"] or "stop"
        return Completion(text, usage["prompt_tokens"], usage["completion_tokens"], finish)

    def chat_template(self) -> str | None:
        template = self.llm.metadata.get("tokenizer.chat_template")
        return str(template) if template else None

    def versions(self) -> dict[str, str]:
        import llama_cpp

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        ggml = sorted(p.name for p in lib_dir.glob("libggml-base.so.*.*"))
        info: dict[str, Any] = {
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp.system_info": llama_cpp.llama_print_system_info().decode().strip(),
            "llama_cpp.gpu_offload": str(bool(llama_cpp.llama_supports_gpu_offload())),
            "llama_cpp.threads": str(self.threads),
            "llama_cpp.kv_types": f"k={self.config.type_k} v={self.config.type_v}",
            "llama_cpp.flash_attn": str(self.config.flash_attn),
            "llama_cpp.n_gpu_layers": str(self.config.n_gpu_layers),
        }
        if ggml:
            info["ggml.lib"] = ggml[-1]
        return {k: str(v) for k, v in info.items()}

    def generation_settings(self) -> dict[str, str]:
        bos = self.llm.tokenize(b"", add_bos=True)
        special = "bos added" if bos else "none added"
        return {**SETTINGS, "special_tokens": special, "tokenizer": "llama.cpp (GGUF vocab)"}

    def counters(self) -> dict[str, float]:
        """llama.cpp's own perf counters (cumulative since the context was made): the time
        spent in single-token decode calls and in prompt batches, and their token counts."""
        import llama_cpp

        perf = llama_cpp.llama_perf_context(self.llm._ctx.ctx)
        return {
            "decode_tokens": float(perf.n_eval),
            "decode_s": perf.t_eval_ms / 1e3,
            "prefill_tokens": float(perf.n_p_eval),
            "prefill_s": perf.t_p_eval_ms / 1e3,
        }

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
