#!/bin/bash
# Issue 7's architecture sweep: short chitchat trainings under one budget each, two at a time (one CPU thread each,
# as this 2-core machine allows), then each model's word perplexity on the first 3,000 valid pairs.
#
#   bash bench/model_sweep.sh [OUT_DIR] [MINUTES]      (default: sweep/ and 12 minutes per run)
#
# Prints one JSON line per run: its name, steps, target tokens/s, best validation loss and the eval figures.
set -euo pipefail
out=${1:-sweep}; minutes=${2:-12}
mkdir -p "$out"

run() {  # NAME [train flags...]
  local name=$1; shift
  chatbot train chitchat --out "$out/$name" --force --time-budget "$minutes" --valid-every 500 --threads 1 "$@" \
    > "$out/$name.train.log" 2>&1
  chatbot eval chitchat --model "$out/$name" --split valid --limit 3000 --replies 0 --threads 1 \
    > "$out/$name.eval.json" 2> "$out/$name.eval.err"
}

pair() {  # two runs side by side: "NAME FLAGS..." "NAME FLAGS..."
  # shellcheck disable=SC2086
  run $1 & run $2 & wait
}

pair "gru256" "lstm256 --cell lstm"
pair "gru512 --hidden-size 512" "vocab8k --vocab-size 8000"
pair "concat --attention concat" "dot --attention dot"

for name in gru256 lstm256 gru512 vocab8k concat dot; do
  python3 - "$out" "$name" <<'PY'
import json, sys
out, name = sys.argv[1:]
training = json.load(open(f"{out}/{name}/metrics.json"))["training"]
valid = json.load(open(f"{out}/{name}.eval.json"))
print(json.dumps({
    "run": name, "steps": training["steps"], "target_tokens_per_second": round(training["target_tokens"] / training["seconds"]),
    "best_valid_loss": round(training["best_valid_loss"], 4), "word_perplexity": round(valid["word_perplexity"], 1),
    "token_perplexity": round(valid["token_perplexity"], 1),
}))
PY
done
