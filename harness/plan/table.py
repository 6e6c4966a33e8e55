"""The ``plan=true`` table: every cell on its hardware, support and memory fit, nothing run.

Sizes in GiB (2^30 bytes), or MiB for a plan whose largest need is under 2 GiB. ``need``
is everything the cell must hold on the device (host RSS for a CPU
cell); ``usable`` is what the runtime may use there (vLLM: gpu_memory_utilization × total);
``max KV tok`` is how many tokens of KV cache (context × sequences) fit beside the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.feasibility.estimates import GIB, MIB
from harness.feasibility.footprint import NO_FIT, Footprint
from harness.plan.cell import Cell

HEADERS = (
    "ckpt",
    "method/precision",
    "runtime",
    "hardware",
    "weights",
    "KV (tokens, k/v)",
    "other",
    "need",
    "usable",
    "fit",
    "headroom",
    "max KV tok",
)


_UNIT = {"size": float(GIB)}  # set per table: MiB for small models, GiB otherwise


def _gib(value: float) -> str:
    return f"{value / _UNIT['size']:.1f}"


def _fit(cell: Cell, fp: Footprint | None) -> str:
    # a cell the engine cannot run says "skip" (its note says why), whatever its memory
    if fp is None or (cell.skip and not cell.skip.startswith(NO_FIT)):
        return "skip" if cell.skip else "?"
    if fp.offload_layers:
        return f"offload {fp.offload_layers}/{fp.layers}"
    return fp.fit.status.value


def row(cell: Cell, ckpt: str = "-") -> tuple[str, ...]:
    c, fp = cell.config, cell.footprint
    method = cell.choices.get("method", c.method.name)
    label = f"{method}/{cell.choices.get('precision', c.precision.name)}"
    head = (ckpt, label, cell.choices["runtime"], c.hardware.name)
    if fp is None:
        return (*head, *("-",) * 6, _fit(cell, fp), "-", "-")
    return (
        *head,
        _gib(fp.weights),
        f"{_gib(fp.kv)} ({fp.kv_tokens}, {fp.kv_dtype})",
        _gib(fp.activations + fp.overhead),
        _gib(fp.need),
        _gib(fp.usable),
        _fit(cell, fp),
        f"{fp.fit.headroom_bytes / _UNIT['size']:+.1f}",
        str(fp.fit.max_tokens),
    )


def _note(cell: Cell) -> str | None:
    parts = []
    if cell.skip:
        parts.append(cell.skip)
    if cell.caveat:
        parts.append(f"caveat: {cell.caveat}")
    if cell.unpredicted:
        parts.append(f"memory not predicted: {cell.unpredicted}")
    return "; ".join(parts) or None


def weight_basis(cells: Sequence[Cell]) -> list[str]:
    """Where each method/precision's weight bytes came from, once each."""
    seen: dict[str, str] = {}
    for c in cells:
        if c.footprint is not None:
            label = f"{c.config.method.name}/{c.config.precision.name}"
            seen.setdefault(label, c.footprint.weights_source)
    return [f"{label}: {source}" for label, source in seen.items()]


def render(cells: Sequence[Cell], title: str) -> str:
    """The table, then one numbered note per cell that has something to say."""
    ordered = sorted(cells, key=lambda c: (c.config.hardware.name, c.index))
    needs = [c.footprint.need for c in cells if c.footprint is not None]
    small = bool(needs) and max(needs) < 2 * GIB
    _UNIT["size"] = float(MIB if small else GIB)
    title = f"{title}; sizes in {'MiB' if small else 'GiB'} (2^{20 if small else 30} bytes)"
    ids = _checkpoint_ids(ordered)
    rows = [HEADERS, *(row(c, ids.get(_ckpt_key(c), "-")) for c in ordered)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    numeric = set(range(4, len(HEADERS))) - {5, 9}
    lines = [title, ""]
    notes: dict[str, int] = {}
    for n, r in enumerate(rows):
        cells_text = [
            r[i].rjust(widths[i]) if i in numeric and n else r[i].ljust(widths[i])
            for i in range(len(r))
        ]
        mark = ""
        if n:
            note = _note(ordered[n - 1])
            if note:
                mark = f"[{notes.setdefault(note, len(notes) + 1)}]"
        lines.append("  ".join(cells_text) + ("  " + mark if mark else ""))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    runnable = sum(1 for c in cells if not c.skip)
    lines += ["", f"{len(cells)} cells: {runnable} would run, {len(cells) - runnable} skipped"]
    lines += checkpoint_lines(ordered, ids)
    basis = weight_basis(ordered)
    if basis:
        lines += ["", "weights:", *basis]
    if notes:
        lines += ["", "notes:", *(f"[{i}] {text}" for text, i in notes.items())]
    return "\n".join(lines)


def _ckpt_key(cell: Cell) -> str:
    return cell.checkpoint.key if cell.checkpoint is not None else ""


def _checkpoint_ids(cells: Sequence[Cell]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for c in cells:
        if c.checkpoint is not None:
            ids.setdefault(c.checkpoint.key, f"C{len(ids) + 1}")
    return ids


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def checkpoint_lines(cells: Sequence[Cell], ids: dict[str, str]) -> list[str]:
    """One line per distinct checkpoint: where from, its size, what is still to download,
    and whether the Hub cache's disk holds everything the sweep must download."""
    from harness.artifacts.hub import cache_root, free_bytes

    seen = {c.checkpoint.key: c.checkpoint for c in cells if c.checkpoint is not None}
    if not seen:
        return []
    lines, need, unknown = ["", "checkpoints:"], 0, False
    for key, cp in seen.items():
        total = _size(cp.total_bytes) if cp.total_bytes is not None else "size unknown"
        if cp.missing_bytes is None:
            fetch, unknown = "download: unknown, offline", True
        elif cp.missing_bytes == 0:
            fetch = "in the cache"
        else:
            fetch, need = f"download: {_size(cp.missing_bytes)}", need + cp.missing_bytes
        lines.append(f"{ids[key]}  {cp.label}: {total}, {fetch}")
    free = free_bytes()
    verdict = "does NOT fit" if need > free else "unknown" if unknown else "fits"
    more = " plus checkpoints of unknown size" if unknown else ""
    lines.append(
        f"Hub cache {cache_root()}: {_size(need)} to download{more}; {_size(free)} free: {verdict}"
    )
    if unknown:
        lines.append(
            "  unknown sizes: the Hub is unreachable from here (or HF_HUB_OFFLINE=1) and the "
            "cache lacks them; plan where the Hub is reachable to see them"
        )
    return lines


def title_of(cells: Sequence[Cell], name: str) -> str:
    c = cells[0].config
    w = c.workload
    arch = c.model.architecture
    params = f", {c.model.parameters / 1e9:.2f} B parameters" if c.model.parameters else ""
    ctx = f", max context {arch.max_context}" if arch is not None else ""
    return (
        f"plan {name}: {c.model.name}{params}{ctx}; workload {w.name} "
        f"(concurrency {w.concurrency}, {w.max_new_tokens} output tokens)"
    )
