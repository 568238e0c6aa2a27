#!/bin/bash
# Train candidate default models on a lent GPU machine, four at once, and pack them (weights as fp16, in 15 MiB
# parts) with their logs into $OUT for the trip back. Run from the repository root there, with the wheels of the
# packages that machine lacks (alembic, Mako, SQLAlchemy, greenlet, platformdirs, wcwidth, chitchat-dataset) in
# .whl/. Measured on 2026-12-04 (BENCHMARKS.md, "Training on a GPU"): four runs preparing their data at once took
# 6.3 minutes there before the first step, so the 6.3-minute budget below ended them early; run fewer, or longer.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch;print(torch.__version__, torch.cuda.is_available())"
W=/tmp/runs; mkdir -p $W
COMMON="train chitchat --force --epochs 12 --batch-size 128 --learning-rate 1e-3 --warmup-steps 300 --lr-schedule cosine \
 --short-context-share 0.3 --valid-every 1000 --attention dot --cell gru --no-reply-index --device cuda --precision fp32 \
 --time-budget 6.3 --threads 3 --strategy beam --beam-size 5 --n-best 5 --min-length 4 --mmi-weight 0.7 --mmi-prefix 32 \
 --length-penalty 1.0 --top-p 0.5"
run() { name=$1; shift; python3 -m chatbot -v $COMMON --out $W/$name "$@" > $W/$name.log 2>&1 & }
run A --embedding-size 256 --hidden-size 384 --dropout 0.2
run B --embedding-size 384 --hidden-size 512 --tie-embeddings --dropout 0.2
run C --embedding-size 384 --hidden-size 512 --tie-embeddings --dropout 0.35
run E --embedding-size 256 --hidden-size 256 --dropout 0.1
python3 -m chatbot train chitchat --out $W/amp --force --max-steps 40 --hidden-size 32 --embedding-size 32 --vocab-size 400 \
  --no-reply-index --device cuda --precision auto --valid-every 0 > $W/amp.log 2>&1 &
for i in $(seq 1 80); do
  sleep 15
  echo "t=$(( $(date +%s) - T0 ))s $(for n in A B C E; do printf '%s:%s ' $n "$(grep -o "'step': [0-9]*" $W/$n.log | tail -1)"; done) $(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader)"
  if [ -z "$(jobs -r)" ]; then break; fi
  if [ $(( $(date +%s) - T0 )) -gt 535 ]; then echo "out of time: stopping what still runs"; kill $(jobs -p) 2>/dev/null; sleep 2; break; fi
done
for n in A B C E amp; do echo "== $n"; tail -4 $W/$n.log | cut -c1-400; done
python3 - <<'PY'
import hashlib, json, pathlib, torch
for name in "ABC":
    d = pathlib.Path("/tmp/runs") / name
    if not (d / "model.pt").exists():
        continue
    state = torch.load(d / "model.pt", map_location="cpu")
    torch.save({k: v.half() for k, v in state.items()}, d / "model.pt")
    config = json.loads((d / "config.json").read_text())
    config["sha256"]["model.pt"] = hashlib.sha256((d / "model.pt").read_bytes()).hexdigest()
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
PY
cd $W && tar cf - --exclude='*.partial' A B C 2>/dev/null | split -b 15M - $OUT/models.tar.
tar czf $OUT/logs.tgz *.log */metrics.json */metrics.jsonl */config.json 2>/dev/null
ls -la $OUT; echo "total $(( $(date +%s) - T0 ))s"
