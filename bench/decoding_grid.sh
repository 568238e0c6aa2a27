#!/bin/bash
# Issue 7's decoding choice: `chatbot eval` of one model on the first 1,000 valid pairs with each decoding below,
# 1,000 generated replies each (sampling seeded by eval's --seed, default 0). The goals: distinct-2 >= 0.25,
# generic-reply rate <= 10%, no empty and no looping replies; among the decodings that meet them, the one with the
# best unigram F1 against the real replies becomes the model's default.
#
#   bash bench/decoding_grid.sh [MODEL_DIR]      (default: data/default-model)
#
# Prints one JSON line per decoding: its name and the reply figures.
set -euo pipefail
model=${1:-data/default-model}
while IFS='|' read -r name flags; do
  # shellcheck disable=SC2086
  chatbot eval chitchat --model "$model" --split valid --limit 1000 --replies 1000 --threads 1 $flags 2>/dev/null \
    | python3 -c "
import json, sys
replies = json.load(sys.stdin)['replies']
print(json.dumps({'decoding': '$name', **{k: round(v, 4) for k, v in replies.items() if k != 'decode'}}))"
done <<'GRID'
greedy|--strategy greedy
beam5|--strategy beam --beam-size 5
beam5_mmi|--strategy beam --beam-size 5 --n-best 5 --mmi-weight 0.5
sample_t1_p09|--strategy sample --temperature 1.0 --top-p 0.9
sample_t08_p07|--strategy sample --temperature 0.8 --top-p 0.7
sample_t07_p05|--strategy sample --temperature 0.7 --top-p 0.5
rank5_t08_p07|--strategy sample --temperature 0.8 --top-p 0.7 --n-best 5
rank5_t1_p09|--strategy sample --temperature 1.0 --top-p 0.9 --n-best 5
rank5_t1_p09_mmi|--strategy sample --temperature 1.0 --top-p 0.9 --n-best 5 --mmi-weight 0.5
sample_t08_p06|--strategy sample --temperature 0.8 --top-p 0.6
sample_t07_p06|--strategy sample --temperature 0.7 --top-p 0.6
sample_t09_p05|--strategy sample --temperature 0.9 --top-p 0.5
sample_t1_p05|--strategy sample --temperature 1.0 --top-p 0.5
GRID
