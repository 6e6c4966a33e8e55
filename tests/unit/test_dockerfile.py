"""Dockerfile.gpu: hadolint-clean, one pinned target per runtime, versions that agree with
pyproject.toml's extras, and the facts each image records about itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile.gpu"
TEXT = DOCKERFILE.read_text()
ARGS = dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", TEXT, flags=re.M))
# Dockerfile version argument -> (pyproject extra, distribution)
PINNED = {
    "VLLM_VERSION": ("vllm", "vllm"),
    "TRTLLM_VERSION": ("trtllm", "tensorrt-llm"),
    "LLAMA_CPP_VERSION": ("llama_cpp", "llama-cpp-python"),
    "TORCH_VERSION": ("hf", "torch"),
    "TORCHAO_VERSION": ("hf", "torchao"),
    "BITSANDBYTES_VERSION": ("bnb", "bitsandbytes"),
}
TARGETS = {"vllm": "vllm", "trtllm": "tensorrt_llm", "llama_cpp": "llama_cpp_python", "hf": "torch"}


def _stage(name: str) -> str:
    """The text of one build stage (from its FROM to the next)."""
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", TEXT, flags=re.M | re.S)
    assert match, f"no stage {name}"
    return match.group(1)


def test_hadolint_passes_on_every_target() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    r = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_base_image_is_pinned_by_tag_and_digest() -> None:
    images = {k: v for k, v in ARGS.items() if k.endswith("_IMAGE")}
    assert set(images) == {"CUDA_DEVEL_IMAGE", "CUDA_RUNTIME_IMAGE", "TRTLLM_IMAGE"}
    for name, ref in images.items():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", ref), (name, ref)
    for line in re.findall(r"^FROM (\S+)", TEXT, flags=re.M):
        assert line.startswith("${") or line in {"cuda-python"}, f"FROM {line} is not pinned"


@pytest.mark.parametrize("target", TARGETS)
def test_each_runtime_target_runs_the_harness_and_says_what_it_holds(target: str) -> None:
    stage = _stage(target)
    assert re.search(r'^ENTRYPOINT \["python3?", "-m", "harness"\]$', stage, flags=re.M)
    assert f"ENV HARNESS_IMAGE={target} HARNESS_BASE_IMAGE=${{" in stage
    assert f"docker/image_facts.py {target} " in stage
    assert f"io.harness.runtime.{TARGETS[target]}=" in stage
    assert f'org.opencontainers.image.title="harness-gpu:{target}"' in stage


def test_the_pinned_versions_agree_with_pyprojects_extras() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for arg, (extra, dist) in PINNED.items():
        version = ARGS[arg]
        (spec,) = [Requirement(r) for r in extras[extra] if Requirement(r).name == dist]
        assert spec.specifier.contains(version), f"{arg}={version} but [{extra}] wants {spec}"
    assert ARGS["LLAMA_CPP_VERSION"] in (REPO / "scripts" / "install.sh").read_text()


def test_image_facts_records_versions_and_refuses_a_missing_runtime(tmp_path: Path) -> None:
    script = REPO / "docker" / "image_facts.py"
    ok = subprocess.run(
        [sys.executable, str(script), "hf", "psutil", "numpy"],
        capture_output=True,
        text=True,
        env={"PATH": "", "CUDA_VERSION": "12.9.1"},
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    facts = json.loads(ok.stdout)
    assert facts["target"] == "hf" and set(facts["packages"]) == {"psutil", "numpy"}
    assert re.fullmatch(r"\d+\.\d+", facts["cuda"])  # torch's build, else the toolkit's
    bad = subprocess.run(
        [sys.executable, str(script), "vllm", "vllm"], capture_output=True, text=True, timeout=60
    )
    assert (bad.returncode, bad.stderr.strip()) == (1, "image vllm: not installed: vllm")


def test_a_driver_older_than_the_images_cuda_is_refused_a_newer_minor_is_flagged() -> None:
    from harness.measure.image import driver_gap

    refusal, flag = driver_gap("13.0", "12.8")
    assert flag is None and refusal == (
        "this image's kernels need CUDA 13.0 but the host driver supports CUDA 12.8 at most: "
        "update the NVIDIA driver (CUDA 13.x needs a 13.x driver) or use an image built for "
        "CUDA 12.8"
    )
    refusal, flag = driver_gap("12.9", "12.4")
    assert refusal is None and flag and flag.startswith("image built for CUDA 12.9 on a CUDA 12.4")
    assert driver_gap("12.9", "13.0") == (None, None)
    assert driver_gap(None, "13.0") == (None, None)


def test_the_image_is_recorded_from_what_it_says_about_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.measure.image import image_tags
    from harness.measure.metadata import image_facts

    facts = tmp_path / "image.json"
    facts.write_text('{"target": "vllm", "cuda": "12.9", "packages": {"vllm": "0.34.0"}}')
    monkeypatch.setenv("HARNESS_IMAGE", "vllm")
    monkeypatch.setenv("HARNESS_IMAGE_FACTS", str(facts))
    monkeypatch.setenv("HARNESS_BASE_IMAGE", ARGS["CUDA_RUNTIME_IMAGE"])
    monkeypatch.delenv("HARNESS_IMAGE_DIGEST", raising=False)
    tags = image_tags(image_facts(), "12.4")
    assert tags["image.name"] == "vllm" and tags["image.pkg.vllm"] == "0.34.0"
    assert tags["image.base"] == ARGS["CUDA_RUNTIME_IMAGE"] and tags["image.cuda"] == "12.9"
    assert tags["image.digest"].startswith("unknown: pass -e HARNESS_IMAGE_DIGEST=")
    assert tags["image.cuda_compat"].startswith("image built for CUDA 12.9 on a CUDA 12.4")
    monkeypatch.setenv("HARNESS_IMAGE_DIGEST", "harness-gpu@sha256:" + "a" * 64)
    assert image_tags(image_facts(), "12.9")["image.digest"].endswith("a" * 64)


def test_the_gpu_check_script_parses_and_refuses_a_machine_without_a_driver(
    tmp_path: Path,
) -> None:
    import shutil

    script = REPO / "scripts" / "gpu_check.sh"
    bash, dirname = shutil.which("bash"), shutil.which("dirname")
    assert bash and dirname
    assert subprocess.run([bash, "-n", str(script)], timeout=30).returncode == 0
    (tmp_path / "dirname").symlink_to(dirname)  # the only command on PATH: no nvidia-smi
    r = subprocess.run(
        [bash, str(script)], capture_output=True, text=True, timeout=30,
        env={"PATH": str(tmp_path)},
    )  # fmt: skip
    assert (r.returncode, r.stderr.strip()) == (
        2,
        "error: nvidia-smi not found: the GPU check needs an NVIDIA GPU and its driver",
    )
