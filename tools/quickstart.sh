#!/usr/bin/env bash
# The README's two commands. Each one sets up what it needs first (idempotent):
#   bash tools/quickstart.sh demo   # run the main job on a bundled example
#   bash tools/quickstart.sh test   # run the test suite
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1;34m[quickstart]\033[0m %s\n' "$*" >&2; }

system_packages() {
  local need=()
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
  command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
  command -v xdotool >/dev/null 2>&1 || need+=(xdotool)
  command -v xclip >/dev/null 2>&1 || need+=(xclip)
  fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)
  if ((${#need[@]})); then
    log "installing system packages: ${need[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
}

python_env() {
  if [ ! -x "$PY" ]; then
    log "creating virtual environment in .venv"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
  fi
  # torch first and pinned: a looser spec would pull the CUDA build (several GB).
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    log "installing torch==2.13.0 (CPU)"
    "$PY" -m pip install -q torch==2.13.0
  fi
  local stamp="$VENV/.internvl-agent-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing internvl-agent with its extras"
    "$PY" -m pip install -q -e ".[test,browser,desktop,openai,serve,eval]"
    touch "$stamp"
  fi
}

setup() {
  system_packages
  python_env
}

case "${1:-}" in
  demo)
    setup
    shift
    exec "$PY" -m internvl_agent demo "$@"
    ;;
  test)
    setup
    shift
    "$VENV/bin/ruff" check internvl_agent tests tools examples
    "$VENV/bin/ruff" format --check internvl_agent tests tools examples
    "$VENV/bin/mypy"
    exec "$PY" -m pytest -q -p no:cacheprovider "$@"
    ;;
  *)
    echo "usage: bash tools/quickstart.sh demo|test" >&2
    exit 2
    ;;
esac
