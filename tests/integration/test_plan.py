"""`plan=true` prints the fit and support table for every cell and runs nothing."""

from pathlib import Path

from tests.conftest import HarnessRun
from tests.integration.test_cli_errors import assert_one_line_error


def rows(stdout: str) -> dict[tuple[str, str, str], list[str]]:
    """Table rows by (method/precision, runtime, hardware), without the leading ckpt column
    (its id is the row's last element)."""
    out = {}
    for line in stdout.splitlines():
        ckpt, *parts = line.split() or [""]
        if len(parts) > 8 and "/" in parts[0] and parts[2].endswith(("gb", "_local")):
            out[(parts[0], parts[1], parts[2])] = [*parts, ckpt]
    return out


def test_70b_int4_plan_covers_every_cell_without_running(
    harness_cli: HarnessRun, tmp_path: Path
) -> None:
    r = harness_cli("+sweep=70b_int4", "plan=true", timeout=120)
    assert r.returncode == 0, r.stderr
    table = rows(r.stdout)
    assert len(table) == 80  # 5 method/precision × 4 runtimes × 4 cards
    assert "80 cells: 22 would run, 58 skipped" in r.stdout
    awq = table[("awq/int4", "vllm", "h100_80gb")]
    assert awq[3] == "37.0" and "fits" in awq
    assert "does not fit" in " ".join(table[("awq/int4", "vllm", "rtx4090_24gb")])
    assert "offload" in " ".join(table[("gguf/q4_k_m", "llama_cpp_gpu", "rtx4090_24gb")])
    assert "skip" in table[("gguf/q4_k_m", "vllm", "h100_80gb")]
    assert "GGUF in vLLM is an out-of-tree experimental plugin" in r.stdout
    assert "fits with runtime.n_gpu_layers=" in r.stdout
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded
    # every runnable cell names its checkpoint, each listed once with where it comes from
    runnable = [r for r in table.values() if "skip" not in r and "does" not in r]
    assert all(r[-1].startswith("C") for r in runnable)
    assert awq[-1] == table[("awq/int4", "hf", "a100_80gb")][-1]  # one checkpoint, shared
    for repo in (
        "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4@main",
        "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF@main",
        "meta-llama/Llama-3.1-70B-Instruct@main",
    ):
        assert f"  {repo}: size unknown, download: unknown, offline" in r.stdout
    assert "Hub cache " in r.stdout


def test_the_gpu_check_plans_its_five_cells_from_two_hub_checkpoints(
    harness_cli: HarnessRun,
) -> None:
    r = harness_cli(
        "+sweep=gpu_check", "hardware=h200_141gb", "plan=true", env={"HF_HUB_OFFLINE": "1"}
    )
    assert r.returncode == 0, r.stderr
    table = rows(r.stdout)
    assert sorted(k[:2] for k in table) == [
        ("bnb/nf4", "hf"),
        ("gguf/q4_k_m", "llama_cpp_gpu"),
        ("none/native", "hf"),
        ("torchao/int4", "hf"),
        ("torchao/int8", "hf"),
    ]
    assert "5 cells: 5 would run, 0 skipped" in r.stdout
    assert {row[-1] for row in table.values()} == {"C1", "C2"}
    assert "C2  Qwen/Qwen2.5-0.5B-Instruct-GGUF@main" in r.stdout


def test_plan_of_the_cpu_sweep_uses_this_machines_memory(harness_cli: HarnessRun) -> None:
    r = harness_cli("+sweep=135m_gguf", "plan=true", timeout=120)
    assert r.returncode == 0, r.stderr
    table = rows(r.stdout)
    assert len(table) == 6
    assert all("fits" in row for row in table.values())
    assert "sizes in MiB" in r.stdout


def test_plan_with_a_card_without_memory_is_one_line(harness_cli: HarnessRun) -> None:
    r = harness_cli("+sweep=70b_int4", "plan=true", "hardware.memory_gb=null", timeout=120)
    assert_one_line_error(r, "has no memory size; set hardware.memory_gb")


def test_plan_of_a_model_without_architecture_is_one_line(
    harness_cli: HarnessRun, tiny_gguf: Path
) -> None:
    r = harness_cli("model=tiny", f"model.source.path={tiny_gguf}", "plan=true")
    assert_one_line_error(r, "model tiny has no architecture; the memory plan needs")
