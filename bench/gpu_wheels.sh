#!/bin/bash
# Fetch, on this machine, the wheels bench/gpu_train.sh installs on a lent GPU machine: that machine has torch,
# numpy, sentencepiece and click but not these, and reaches no package index. They go to .whl/ (git-ignored; name
# it in the device run's carry), at the versions this project's venv has, for Pythons 3.11 to 3.13 (these
# versions need 3.11), since the GPU machine's Python is its own. gpu_train.sh installs whatever is in .whl/.
#   bash bench/gpu_wheels.sh        then, on the device: bash bench/gpu_train.sh
set -euo pipefail
PKGS=$(.venv/bin/python -m pip freeze | grep -i -E '^(alembic|mako|sqlalchemy|platformdirs|wcwidth|chitchat-dataset)==')
for version in 3.11 3.12 3.13; do
  .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl $PKGS
done
ls .whl
