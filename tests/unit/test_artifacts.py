import errno
import hashlib
import threading
from pathlib import Path

import pytest

from harness.artifacts.cache import ArtifactCache, Step, content_key, locate_source, sha256_file
from harness.artifacts.gguf_file import read_table
from harness.artifacts.quantize import DEQUANTIZE, QUANTIZE, describe, materialize, plan
from harness.config.errors import UserError
from harness.config.schema import ModelSource


def step(key: str) -> Step:
    return Step(key, DEQUANTIZE, "f16", "gguf", "1", "abc", None)


def test_sha256_index_remembers_by_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    index = tmp_path / "hashes.json"
    assert sha256_file(f, index) == hashlib.sha256(b"hello").hexdigest()
    assert str(f) in index.read_text()
    f.write_bytes(b"hello world")  # new size -> rehashed
    assert sha256_file(f, index) == hashlib.sha256(b"hello world").hexdigest()


def test_cache_builds_once_and_publishes_atomically(tiny_gguf: Path, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    calls = []

    def make(out: Path) -> None:
        calls.append(out)
        out.write_bytes(tiny_gguf.read_bytes())

    def desc(path: Path, s: Step, build_s: float) -> object:
        return describe(path, s, build_s, sha256_file(path))

    s = step("k1")
    first = cache.build(s, make, desc)
    second = cache.build(s, make, desc)
    assert len(calls) == 1
    assert first.cache_hit is False and second.cache_hit is True
    assert Path(second.path) == cache.path("k1") and cache.path("k1").is_file()
    assert cache.lookup("k1") == second
    assert not list(cache.dir.glob("*.tmp-*"))


def test_concurrent_builders_build_once(tiny_gguf: Path, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    calls = []

    def make(out: Path) -> None:
        calls.append(1)
        out.write_bytes(tiny_gguf.read_bytes())

    def build() -> None:
        cache.build(step("k2"), make, lambda p, s, b: describe(p, s, b, sha256_file(p)))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")

    def make(out: Path) -> None:
        out.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        cache.build(step("k3"), make, lambda p, s, b: describe(p, s, b, sha256_file(p)))
    assert cache.lookup("k3") is None
    assert [p.name for p in cache.dir.iterdir()] == ["k3.lock"]  # no temporary directory


def test_a_damaged_entry_is_found_on_use_and_rebuilt(tiny_gguf: Path, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    steps = plan("gguf", "f16", "srcsha", read_table(tiny_gguf))
    built = materialize(steps, tiny_gguf, cache, threads=1)
    key, notes = steps[-1].key, []
    assert cache.verify(key) is None and cache.lookup_verified(key, notes.append) is not None
    path = cache.path(key)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a truncated copy
    assert cache.verify(key) == f"{path} is {len(data) // 2} bytes, {len(data)} when built"
    assert cache.lookup_verified(key, notes.append) is None
    assert notes == [
        f"cached artifact {key} failed verification ({path} is {len(data) // 2} bytes, "
        f"{len(data)} when built); rebuilding it"
    ]
    again = materialize(steps, tiny_gguf, cache, threads=1)
    assert again.cache_hit is False and again.sha256 == built.sha256
    # same size, other bytes: the hash tells (the remembered hash is keyed by size and mtime)
    flipped = bytearray(path.read_bytes())
    flipped[-1] ^= 0xFF
    path.write_bytes(bytes(flipped))
    assert "has sha256" in (cache.verify(key) or "")


def test_gguf_plan_from_a_quantized_source(tiny_gguf: Path) -> None:
    table = read_table(tiny_gguf)
    ref, q = plan("gguf", "q4_k_m", "srcsha", table)
    assert (ref.op, ref.precision, ref.input_key) == (DEQUANTIZE, "f16", None)
    assert (q.op, q.precision, q.input_key) == (QUANTIZE, "q4_k_m", ref.key)
    assert plan("gguf", "f16", "srcsha", table) == [ref]
    assert plan("none", "native", "srcsha", table) == []
    # the key moves with the input content and the precision
    assert plan("gguf", "q4_k_m", "other", table)[-1].key != q.key
    assert plan("gguf", "q8_0", "srcsha", table)[-1].key != q.key


def test_materialize_reference_through_the_cache(tiny_gguf: Path, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    steps = plan("gguf", "f16", "srcsha", read_table(tiny_gguf))
    info = materialize(steps, tiny_gguf, cache, threads=1)
    assert info.file_type == "MOSTLY_F16" and info.cache_hit is False
    assert info.recipe["op"] == DEQUANTIZE and info.build_s is not None
    again = materialize(steps, tiny_gguf, cache, threads=1)
    assert again.cache_hit is True and again.sha256 == info.sha256


def test_locate_source_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"model.source.path=/nope.gguf: no such file"):
        locate_source(ModelSource(path="/nope.gguf"))
    with pytest.raises(UserError, match=r"package=no-such-dist is not installed"):
        locate_source(ModelSource(package="no-such-dist", file="x.gguf"))
    with pytest.raises(UserError, match=r"file=missing.gguf is not in package pytest"):
        locate_source(ModelSource(package="pytest", file="missing.gguf"))


def test_content_key_separates_parts() -> None:
    assert content_key("ab", "c") != content_key("a", "bc")
