import subprocess
import sys
from types import ModuleType

import pytest

import harness
import runners


@pytest.mark.parametrize("module", [harness, runners])
def test_all_lists_exactly_what_the_package_defines(module: ModuleType) -> None:
    assert all(hasattr(module, n) for n in module.__all__)
    own = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, ModuleType)
        and getattr(obj, "__module__", "").split(".")[0] in ("harness", "runners")
    }
    constants = {n for n in module.__all__ if n.isupper()}
    assert own == set(module.__all__) - constants


def test_importing_harness_imports_neither_runtimes_nor_mlflow() -> None:
    heavy = "{'llama_cpp', 'mlflow', 'torch', 'vllm'}"
    code = f"import sys, harness; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
