"""Quality evaluation in the cell's worker, with the model its performance run loaded.

Three parts, each recorded absent with the reason when the runtime cannot do it:

- generation slices (arithmetic, json, instructions, long_context): every item's prompt through
  ``complete`` (greedy, stops at the end of the model's turn, capped per slice), scored by the
  suite's versioned scorers; needs the ``completion`` capability;
- multiple_choice: each choice's summed log-likelihood after the raw prompt (no chat template,
  as lm-evaluation-harness does), from ``logprobs``; needs the ``logits`` capability;
- fidelity over the held-out corpus (harness/quality/reference.py): the baseline writes its
  reference rows, a variant scores its own rows against them (harness/quality/fidelity.py).

Every item's output, score and timing go to ``eval/items.jsonl`` as it finishes; the paired
scorecard is the parent's job (harness/quality/gate.py), which also has the baseline's items.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.config.schema import EvalConfig
from harness.quality.fidelity import FidelityAccumulator, check_compatible
from harness.quality.reference import (
    read_reference,
    reference_key,
    reference_path,
    scored_rows,
    scored_targets,
    windows,
    write_reference,
)
from harness.quality.scorers import SCORER_VERSIONS, ChoiceLogprobs, score
from harness.quality.suites import EvalItem, Suite
from harness.results.clock import now_ns, seconds
from runners import Runner

EVAL_DIR, ITEMS_FILE, SETTINGS_FILE = "eval", "items.jsonl", "settings.json"
FIDELITY_FILE, PER_TOKEN_FILE = "fidelity.json", "fidelity_tokens.npz"
MC_SLICE = "multiple_choice"
BASELINE, VARIANT = "baseline", "variant"


@dataclass(frozen=True)
class EvalTask:
    """What the parent tells the worker: its role, and for a variant where the baseline's
    reference rows are (or why there are none)."""

    role: str
    reference_dir: str | None = None
    reference_missing: str | None = None


@dataclass
class EvalOutput:
    metrics: dict[str, float] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def select_items(suite: Suite, cfg: EvalConfig) -> dict[str, tuple[EvalItem, ...]]:
    """Each requested slice's first n items (the suite orders them so a prefix covers every
    stratum); n from ``items_per_slice``, else ``items``; None: all."""
    out = {}
    for name in cfg.slices or suite.slices:
        n = cfg.items_per_slice.get(name, cfg.items)
        out[name] = suite.items_by_slice[name][:n]
    return out


def _template_sha(runner: Runner, cfg: EvalConfig) -> str:
    if not cfg.chat_template:
        return "raw prompt"
    template = getattr(runner, "chat_template", lambda: None)()
    return "none" if template is None else hashlib.sha256(template.encode()).hexdigest()[:16]


def settings(
    runner: Runner, cfg: EvalConfig, suite: Suite, items: Mapping[str, Sequence[Any]]
) -> dict[str, Any]:
    """What must match between a baseline and its variants for the pairing to mean anything."""
    caps = {s: cfg.max_new_tokens.get(s, cfg.default_max_new_tokens) for s in items}
    return {
        "suite": suite.name,
        "suite_version": suite.version,
        "suite_sha256": suite.manifest_sha256,
        "level": cfg.level.value,
        "items": {s: len(v) for s, v in items.items()},
        "max_new_tokens": {s: n for s, n in caps.items() if s != MC_SLICE},
        "chat_template": _template_sha(runner, cfg),
        "scorers": {s: SCORER_VERSIONS[s] for s in items},
        "metric": {s: cfg.metric.get(s, "correct") for s in items},
        "window_tokens": cfg.window_tokens,
        "corpus_windows": cfg.corpus_windows,
    }


def _generate(runner: Runner, item: EvalItem, cap: int, chat: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "slice": item.slice}
    t0 = now_ns()
    try:
        done = runner.complete(item.prompt, cap, chat)  # type: ignore[attr-defined]
    except Exception as e:  # one bad item (e.g. a prompt over n_ctx) must not end the eval
        row["error"] = f"{type(e).__name__}: {e}"[:500]
        return row
    row.update(
        seconds=seconds(now_ns() - t0),
        output=done.text,
        prompt_tokens=done.prompt_tokens,
        output_tokens=done.output_tokens,
        finish=done.finish,
        score=score(item.slice, done.text, item.data),
    )
    return row


def choice_logprobs(runner: Runner, item: EvalItem) -> ChoiceLogprobs:
    """Sum of log p(continuation token | everything before it) for each choice; the context is
    the tokens the prompt and the full string share (BPE may merge across the boundary)."""
    context = runner.tokenize(item.prompt)
    lps, lengths = [], []
    for choice in item.data["choices"]:
        continuation = item.data.get("continuation_prefix", " ") + str(choice)
        whole = runner.tokenize(item.prompt + continuation)
        start = 0
        while start < min(len(context), len(whole) - 1) and context[start] == whole[start]:
            start += 1
        rows = runner.logprobs(whole)  # type: ignore[attr-defined]
        lps.append(float(sum(rows[i - 1, whole[i]] for i in range(max(start, 1), len(whole)))))
        lengths.append(len(continuation))
    return ChoiceLogprobs(tuple(lps), tuple(lengths))


def _choice(runner: Runner, item: EvalItem) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "slice": item.slice}
    t0 = now_ns()
    try:
        scored = choice_logprobs(runner, item)
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}"[:500]
        return row
    row.update(
        seconds=seconds(now_ns() - t0),
        choice_logprobs=list(scored.logprobs),
        score=score(item.slice, scored, item.data),
    )
    return row


def _numeric(value: Any) -> list[float] | None:
    """Score fields that summarise as a mean: bools, numbers, and lists of bools (pooled)."""
    if isinstance(value, bool | int | float) and not isinstance(value, str):
        return [float(value)]
    if isinstance(value, list) and value and all(isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


def summarize(name: str, rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """Per-slice metrics of one cell: the gated score's mean, se, n, errors, every other
    numeric score field's mean, and for generation how long outputs were and how often the
    cap cut them."""
    ok = [r for r in rows if "score" in r]
    out = {
        f"quality.{name}.n": float(len(ok)),
        f"quality.{name}.errors": float(len(rows) - len(ok)),
    }
    if not ok:
        return out
    main = np.array([float(r["score"][metric]) for r in ok])
    out[f"quality.{name}.score"] = float(main.mean())
    if main.size > 1:
        out[f"quality.{name}.se"] = float(main.std(ddof=1) / np.sqrt(main.size))
    fields: dict[str, list[float]] = {}
    for r in ok:
        for key, value in r["score"].items():
            values = _numeric(value)
            if values is not None and key not in ("correct", "pred", "pred_norm"):
                fields.setdefault(key, []).extend(values)
    out.update({f"quality.{name}.{k}": float(np.mean(v)) for k, v in fields.items()})
    if "output_tokens" in ok[0]:
        out[f"quality.{name}.output_tokens_mean"] = float(np.mean([r["output_tokens"] for r in ok]))
        out[f"quality.{name}.cut_at_cap"] = float(np.mean([r["finish"] == "length" for r in ok]))
    return out


def _slices(
    runner: Runner, cfg: EvalConfig, items: Mapping[str, Sequence[EvalItem]], out_dir: Path
) -> EvalOutput:
    result = EvalOutput()
    caps = runner.capabilities
    with (out_dir / ITEMS_FILE).open("w") as f:
        for name, chosen in items.items():
            needs = "logits" if name == MC_SLICE else "completion"
            if not getattr(caps, needs):
                what = (
                    "returns no logits" if needs == "logits" else "cannot generate to end of turn"
                )
                result.absent[f"quality.{name}"] = f"runtime {runner.name} {what}"
                continue
            rows = []
            for item in chosen:
                if name == MC_SLICE:
                    row = _choice(runner, item)
                else:
                    cap = cfg.max_new_tokens.get(name, cfg.default_max_new_tokens)
                    row = _generate(runner, item, cap, cfg.chat_template)
                f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()
                rows.append(row)
            result.metrics.update(summarize(name, rows, cfg.metric.get(name, "correct")))
            errors = [r["error"] for r in rows if "error" in r]
            if errors:
                result.flags.append(f"eval: {len(errors)} {name} items failed ({errors[0]})")
    return result


FIDELITY_METRICS = (
    "kld_mean",
    "kld_mean_se",
    "kld_p99",
    "kld_max",
    "top1_agreement",
    "top1_agreement_se",
    "delta_p_mean",
    "delta_p_rms",
    "ppl_base",
    "ppl_variant",
    "ppl_ratio",
    "ln_ppl_ratio",
    "ln_ppl_ratio_se",
)


def _absent_fidelity(out: EvalOutput, reason: str) -> None:
    out.absent.update({f"fidelity.{m}": reason for m in FIDELITY_METRICS})


def _own_rows(runner: Runner, wins: Sequence[Sequence[int]], window: int) -> list[Any]:
    return [runner.logprobs(w)[scored_rows(window)] for w in wins]  # type: ignore[attr-defined]


def _nll(rows: Sequence[Any], wins: Sequence[Sequence[int]]) -> float:
    total, n = 0.0, 0
    for r, w in zip(rows, wins, strict=True):
        targets = scored_targets(w)
        total -= float(np.sum(np.asarray(r, dtype=np.float64)[np.arange(len(targets)), targets]))
        n += len(targets)
    return total / n


@dataclass(frozen=True)
class FidelityInputs:
    corpus: str
    corpus_sha256: str
    artifact_sha256: str
    runtime: Mapping[str, Any]  # runtime config and versions: part of the reference key
    cache_dir: Path


def fidelity_phase(
    runner: Runner, cfg: EvalConfig, task: EvalTask, inp: FidelityInputs, out_dir: Path
) -> EvalOutput:
    out = EvalOutput()
    if not runner.capabilities.logits:
        _absent_fidelity(out, f"runtime {runner.name} returns no logits")
        return out
    wins = windows(runner.tokenize(inp.corpus), cfg.window_tokens, cfg.corpus_windows)
    if not wins:
        _absent_fidelity(out, f"the corpus is shorter than one {cfg.window_tokens}-token window")
        return out
    out.metrics["fidelity.n_tokens"] = float(sum(len(scored_targets(w)) for w in wins))
    if task.role == BASELINE:
        runtime = {k: str(v) for k, v in inp.runtime.items()}
        key = reference_key(
            inp.artifact_sha256, inp.corpus_sha256, cfg.window_tokens, cfg.corpus_windows, runtime
        )
        path = reference_path(inp.cache_dir, key)
        if path.is_dir():
            rows: list[Any] = [read_reference(path).rows(i) for i in range(len(wins))]
        else:
            rows = [r.astype(np.float16) for r in _own_rows(runner, wins, cfg.window_tokens)]
            write_reference(path, rows, wins, {"runtime": runtime, "n_vocab": rows[0].shape[1]})
        out.tags["quality.reference_key"] = key
        out.metrics["quality.corpus_ppl"] = float(np.exp(_nll(rows, wins)))
        _absent_fidelity(out, "this cell is the baseline (its own reference)")
        return out
    return _variant_fidelity(runner, task, wins, cfg.window_tokens, out, out_dir)


def _variant_fidelity(
    runner: Runner,
    task: EvalTask,
    wins: Sequence[Sequence[int]],
    window: int,
    out: EvalOutput,
    out_dir: Path,
) -> EvalOutput:
    if task.reference_dir is None:
        _absent_fidelity(out, task.reference_missing or "no baseline reference")
        return out
    try:
        ref = read_reference(Path(task.reference_dir))
    except FileNotFoundError:
        _absent_fidelity(
            out,
            f"baseline reference {task.reference_dir} is not in this machine's cache (the "
            "baseline ran elsewhere or the cache was cleared): re-run it with run.force=true",
        )
        return out
    try:
        rows0 = runner.logprobs(wins[0])  # type: ignore[attr-defined]
        check_compatible(ref.logprobs.shape[1], rows0.shape[1], ref.windows, np.asarray(wins))
    except ValueError as e:
        _absent_fidelity(out, f"not comparable with the baseline: {e}")
        out.flags.append(f"eval: fidelity skipped, {e}")
        return out
    acc = FidelityAccumulator()
    for i, win in enumerate(wins):
        own = rows0 if i == 0 else runner.logprobs(win)  # type: ignore[attr-defined]
        acc.add(ref.rows(i), own[scored_rows(window)], scored_targets(win))
    result = acc.result()
    arrays: dict[str, Any] = acc.per_token()
    np.savez_compressed(out_dir / PER_TOKEN_FILE, **arrays)
    values = {m: getattr(result, m) for m in FIDELITY_METRICS}
    (out_dir / FIDELITY_FILE).write_text(json.dumps({**values, "reference": ref.key}, indent=2))
    for name, value in values.items():
        if value is None:
            out.absent[f"fidelity.{name}"] = "fewer than two scored tokens"
        else:
            out.metrics[f"fidelity.{name}"] = float(value)
    out.metrics["quality.corpus_ppl"] = result.ppl_variant
    out.tags["quality.reference_key"] = ref.key
    out.tags["quality.fidelity_version"] = result.version
    return out


def run_eval(
    runner: Runner,
    cfg: EvalConfig,
    suite: Suite,
    task: EvalTask,
    inp: FidelityInputs,
    cell_dir: Path,
) -> EvalOutput:
    """Generation and multiple-choice slices, then fidelity; writes eval/ in ``cell_dir``."""
    out_dir = cell_dir / EVAL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = now_ns()
    items = select_items(suite, cfg)
    (out_dir / SETTINGS_FILE).write_text(
        json.dumps(settings(runner, cfg, suite, items), indent=2, sort_keys=True)
    )
    out = _slices(runner, cfg, items, out_dir)
    fid = fidelity_phase(runner, cfg, task, inp, out_dir)
    out.metrics.update(fid.metrics)
    out.absent.update(fid.absent)
    out.flags += fid.flags
    out.tags.update(fid.tags)
    out.tags["quality.role"] = task.role
    out.metrics["eval_time_s"] = seconds(now_ns() - t0)
    return out
