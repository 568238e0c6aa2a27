#!/bin/bash
# Train the next candidate default model on a lent GPU machine and pack it (weights stored in fp16, in 15 MiB
# parts) with its log into $OUT for the trip back. Run from the repository root there, with the wheels of the
# packages that machine lacks (alembic, Mako, SQLAlchemy, platformdirs, wcwidth, chitchat-dataset) in .whl/,
# fetched here first by bench/gpu_wheels.sh and carried (the device run's carry: [".whl"]). On 2026-12-04
# (BENCHMARKS.md, "Training on a GPU") four runs at once spent 6.3 minutes preparing their data, and the script's
# own clock stopped them before any finished: this runs one, the shape that learned fastest there (hidden 384).
# --time-budget counts training only, from the first step: 5 minutes leave the installation, the preparation
# (about 2.5 minutes for one run on this project's 2-CPU machine) and the held-out evaluation inside the
# script's 535 seconds. A run that ends on its budget is a finished model (its resumable state in A.partial/ is
# not packed).
set -u
T0=$(date +%s)
# Each package in .whl/ once, in the build that fits this Python.
PACKAGES=$(ls .whl | sed 's/-.*//' | sort -u)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site --find-links .whl \
  $PACKAGES || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch;print(torch.__version__, torch.cuda.is_available())"
W=/tmp/runs; mkdir -p $W
COMMON="train chitchat --force --epochs 12 --batch-size 128 --learning-rate 1e-3 --warmup-steps 300 --lr-schedule cosine \
 --short-context-share 0.3 --valid-every 1000 --attention dot --cell gru --no-reply-index --device cuda --precision fp32 \
 --time-budget 5.0 --threads 8 --weights fp16 --strategy beam --beam-size 5 --n-best 5 --min-length 4 --mmi-weight 0.7 --mmi-prefix 32 \
 --length-penalty 1.0 --top-p 0.5"
python3 -m chatbot -v $COMMON --out $W/A --embedding-size 256 --hidden-size 384 --dropout 0.2 > $W/A.log 2>&1 &
for i in $(seq 1 80); do
  sleep 15
  echo "t=$(( $(date +%s) - T0 ))s A:$(grep -o "'step': [0-9]*" $W/A.log | tail -1) $(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader)"
  if [ -z "$(jobs -r)" ]; then break; fi
  if [ $(( $(date +%s) - T0 )) -gt 535 ]; then echo "out of time: stopping what still runs"; kill $(jobs -p) 2>/dev/null; sleep 2; break; fi
done
echo "== A"; tail -4 $W/A.log | cut -c1-400
cd $W && tar cf - A 2>/dev/null | split -b 15M - $OUT/models.tar.
tar czf $OUT/logs.tgz *.log */metrics.json */metrics.jsonl */config.json 2>/dev/null
ls -la $OUT; echo "total $(( $(date +%s) - T0 ))s"
