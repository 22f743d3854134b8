#!/usr/bin/env bash
# Cue-neutralised worlds (issue 24): the detector's TPR at `distilling` and at FPR <= 0.1 %
# and <= 0.5 % on the full world and with each cue taken away (every account draws it from
# another account of its world, blind to labels). `kept` is TPR at `distilling` over the full
# world's; `kept at budget` is TPR at FPR <= 0.5 % (the issue's budget) over the full world's,
# the bar's figure where a variant flags benign accounts past the budget (the per-kind part of
# the budget, <= 2 % in each benign kind, is not applied here).
# Usage: bench/neutralised.sh [BINARY] [bench args]
# e.g. bench/neutralised.sh target/release/distillguard --seeds 3 --sizes 1000 --days 7
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/distillguard}
shift || true
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--seeds 5)
printf '| world | AUROC | TPR at distilling | kept | FPR at distilling | benign suspicious+ | TPR at FPR <= 0.1 %% | at <= 0.5 %% | kept at budget |\n|---|---|---|---|---|---|---|---|---|\n'
full=""
fullb=""
for cue in "" timing addresses age-and-payment params system-prompts volume; do
  out=$("$bin" bench detect "${args[@]}" ${cue:+--neutralise "$cue"} 2>/dev/null | sed -n '/^pooled/,$p')
  auroc=$(grep '^AUROC' <<<"$out" | awk '{print $2}')
  tpr=$(grep '^TPR at distilling' <<<"$out" | awk '{print $4, $5}')
  tprv=$(grep '^TPR at distilling' <<<"$out" | awk '{print $4}')
  fpr=$(grep '^FPR at distilling' <<<"$out" | awk '{print $4, $5}')
  watch=$(grep '^benign left' <<<"$out" | awk '{print $4, $5}')
  low=$(grep '^TPR at FPR <= 0.1%' <<<"$out" | awk '{print $6, $7}')
  budget=$(grep '^TPR at FPR <= 0.5%' <<<"$out" | awk '{print $6, $7}')
  budgetv=$(grep '^TPR at FPR <= 0.5%' <<<"$out" | awk '{print $6}')
  [ -z "$full" ] && full=$tprv && fullb=$budgetv
  kept=$(python3 -c "print(f'{$tprv / $full:.2f}')")
  keptb=$(python3 -c "print(f'{$budgetv / $fullb:.2f}')")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${cue:-full}" "$auroc" "$tpr" "$kept" "$fpr" "$watch" "$low" "$budget" "$keptb"
done
