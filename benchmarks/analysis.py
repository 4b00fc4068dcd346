"""The statistics behind BENCHMARKS.md, from raw per-run rows alone (no TensorFlow).

Per model, regime and target: mean ± std over seeds, and paired differences
(a[seed] - b[seed] over the seeds both have) with their 95% t interval
mean ± t(0.975, n - 1) · sd / sqrt(n).
"""
import math
import statistics

ONE_SHOT = ("magnitude", "magnitude_noise", "hybrid", "flipout", "tfmot", "random",
            "recent_flips", "flip_triggered")
GRADIENT = ("saliency", "movement_score")
# Sparse from the first step; "_erk": each layer at its ERK density (Evci et al.
# 2020) instead of one sparsity for all (SNIP: instead of one global ranking).
SPARSE_START = ("snip", "set", "rigl", "snip_erk", "set_erk", "rigl_erk")
PEERS = GRADIENT + SPARSE_START + ("targeted_dropout",)
# Train dense under a penalty, then cut to the target by the method's own score (issue 15).
REGULARIZERS = ("variational", "l0", "hoyer")
METHODS = ("dense",) + ONE_SHOT + ("lottery", "lottery_matched") + PEERS + REGULARIZERS
NO_FLIPS = (("magnitude", "magnitude_noise", "tfmot", "random", "lottery_matched")
            + PEERS + REGULARIZERS)
ABLATION = ("magnitude", "magnitude_noise", "hybrid", "flipout")
# Lottery rounds prune to these sparsities in turn (a matched chain stops at
# its target); round r >= 1 trains at the sparsity round r - 1 pruned to.
LOTTERY_ROUNDS = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def lottery_rounds(top):
  return [s for s in LOTTERY_ROUNDS if s < top - 1e-12] + [top]


def training_flops(row):
  """Training compute of a run relative to one dense run of `epochs` epochs,
  counting the prunable weights' multiply-adds, which forward and backward
  passes do in proportion to the weights kept (exact for MLPs; for conv nets,
  whose layers reuse each weight a different number of times, the overall
  kept fraction is an approximation):

    sum over steps of kept(step) / (epochs * ceil(train_examples / batch)).

  Dense, targeted dropout and the regularisers keep every weight (variational
  dropout's local reparameterisation doubles its forward multiply-adds; not
  counted); SNIP, SET and RigL keep 1 - target from the first step (RigL's
  dense gradient at each of its ~30 updates adds < 0.3% of a dense run and is
  left out); one-shot methods halve the kept weights at each of FlipOut's
  `event_steps`, the last capped at the target; lottery rounds are equally
  long, round 0 dense and round r >= 1 at the sparsity round r - 1 pruned to.
  """
  dense_steps = row["epochs"] * -(-row["train_examples"] // row["batch"])
  method, target, steps = row["method"], row["target"], row["steps"]
  if method in ("dense", "targeted_dropout") + REGULARIZERS:
    return steps / dense_steps
  if method in SPARSE_START:
    return steps * (1 - target) / dense_steps
  if method in ("lottery", "lottery_matched"):
    kept = [1.0] + [1 - s for s in lottery_rounds(target)[:row["round"]]]
    return steps / len(kept) * sum(kept) / dense_steps
  events = sorted(row["event_steps"])
  total, kept, last = 0.0, 1.0, 0
  for k, event in enumerate(events, 1):
    total += (event - last) * kept
    kept, last = max(0.5 ** k, 1 - target), event
  return (total + (steps - last) * kept) / dense_steps


def ticket_at(rows, sparsity, mode="rewind"):
  """The round of `mode` at `sparsity` (within a weight), with the steps spent to reach it."""
  spent = 0
  for row in sorted(rows, key=lambda r: r["round"]):
    if row.get("mode", "rewind") != mode:
      continue
    spent += row["steps"]
    if 100 - row["weights_remaining_pct"] >= 100 * sparsity - 1e-3:
      return {"test_accuracy": row["test_accuracy"],
              "sparsity": 1 - row["weights_remaining_pct"] / 100, "steps": spent,
              "round": row["round"], "wall_seconds": None}
  return None


def paired(a, b):
  """Mean of a[seed] - b[seed] over common seeds, with its 95% t interval:
  mean ± t(0.975, n - 1) * sd / sqrt(n). None when fewer than 2 pairs."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  seeds = sorted(set(a) & set(b))
  d = [a[s] - b[s] for s in seeds]
  if len(d) < 2:
    return None
  mean, sd = statistics.mean(d), statistics.stdev(d)
  half = stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
  return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(d)}


def aggregate(rows):
  """{(model, regime, target, method): stats}; dense rows appear at every target."""
  by = {}
  for r in rows:
    by.setdefault((r["model"], r["regime"], r["target"], r["method"]), {})[r["seed"]] = r
  targets = sorted({k[2] for k in by if k[3] != "dense"})
  for (m, g, t, meth), runs in list(by.items()):
    if meth == "dense":
      del by[(m, g, t, meth)]
      for t2 in targets:
        by[(m, g, t2, "dense")] = runs
  out = {}
  for key, runs in by.items():
    acc = {s: r["test_accuracy"] for s, r in runs.items()}
    base = by.get(key[:3] + ("magnitude",))
    out[key] = {
        "accuracy_mean": statistics.mean(acc.values()),
        "accuracy_std": statistics.stdev(acc.values()) if len(acc) > 1 else 0.0,
        "sparsity": statistics.mean(r["sparsity"] for r in runs.values()),
        "steps": statistics.mean(r["steps"] for r in runs.values()),
        "flops": (statistics.mean(training_flops(r) for r in runs.values())
                  if all(k in r for r in runs.values()
                         for k in ("epochs", "batch", "train_examples"))
                  else None),
        "n": len(acc), "accuracy": acc,
        "vs_magnitude": (paired(acc, {s: r["test_accuracy"] for s, r in base.items()})
                         if base and key[3] != "magnitude" else None),
    }
    if key[3] in REGULARIZERS:  # what the penalty reached by itself, before the cut
      out[key].update({k: statistics.mean(r[k] for r in runs.values())
                       for k in ("strength", "natural_sparsity", "natural_accuracy")})
  return out


def ci_text(p):
  return "-" if p is None else (f"{100 * p['mean']:+.2f} [{100 * p['low']:+.2f}, "
                                f"{100 * p['high']:+.2f}]")


def verdict(p):
  """"ahead" (95% CI above 0), "behind" (below) or "within noise" for a paired difference."""
  return "ahead" if p["low"] > 0 else "behind" if p["high"] < 0 else "within noise"


def _excludes_zero(p):
  return p is not None and (p["low"] > 0 or p["high"] < 0)


def flip_term(agg):
  """Rows of the ablation: per (model, regime, target) the paired effect of
  the flip term without and with noise, of the noise, and FlipOut against the
  best method without flips at the same budget."""
  out = []
  # Blocks with a flip arm only: a block of magnitude and peers (e.g. the
  # regularisers' LeNet-5 block) has no flip term to report.
  for model, regime, target in sorted({k[:3] for k in agg if k[3] in ("hybrid", "flipout")}):
    get = lambda meth: agg.get((model, regime, target, meth))  # noqa: E731
    def diff(a, b):
      x, y = get(a), get(b)
      return paired(x["accuracy"], y["accuracy"]) if x and y else None
    rivals = [m for m in NO_FLIPS if get(m)]
    # Ranked on the seeds every rival has: some arms have more seeds than others.
    common = set.intersection(*(set(get(m)["accuracy"]) for m in rivals)) if rivals else set()
    on_common = lambda m: (statistics.mean(get(m)["accuracy"][s] for s in common)  # noqa: E731
                           if common else get(m)["accuracy_mean"])
    best = max(rivals, key=on_common) if rivals else None
    out.append({"model": model, "regime": regime, "target": target,
                "flips_no_noise": diff("hybrid", "magnitude"),
                "flips_with_noise": diff("flipout", "magnitude_noise"),
                "noise": diff("magnitude_noise", "magnitude"),
                "recent_flips": diff("recent_flips", "magnitude"),
                "best_no_flips": best,
                "flipout_vs_best": diff("flipout", best) if best else None})
  return out


def _pct(e):
  return f"{100 * e['target']:g}%"


def _where(rows, key, sign):
  """Targets whose `key` effect has a 95% CI strictly above (sign > 0) or below 0."""
  return [_pct(e) for e in rows if _excludes_zero(e[key]) and (e[key]["mean"] > 0) == (sign > 0)]


def headline(effects, regime="flipout", at_least=0.995):
  """The research question in one sentence: in `regime` at >= `at_least`, is
  hybrid ahead of global magnitude by a 95% CI that excludes 0?"""
  rows = [e for e in effects if e["regime"] == regime and e["target"] >= at_least - 1e-9]
  pairs = [(e, key) for e in rows for key in ("flips_no_noise", "flips_with_noise") if e[key]]
  if not pairs:
    return None
  ahead = [f"{e['model']} {_pct(e)} ({'with' if key == 'flips_with_noise' else 'without'} noise)"
           for e, key in pairs if _excludes_zero(e[key]) and e[key]["mean"] > 0]
  verdict = "Yes, in part" if ahead else "No"
  return (f"{verdict}: in FlipOut's regime at ≥ {100 * at_least:g}% sparsity, the FlipOut "
          f"score |w|²/(flips + 1) beats global magnitude by a 95% CI that excludes 0 in "
          f"{len(ahead)} of {len(pairs)} paired comparisons of the flip term (hybrid vs "
          f"magnitude without noise, flipout vs magnitude_noise with it)"
          + (f" ({', '.join(ahead)})" if ahead else "") + ".")


def answer(effects):
  """The answer, from the ablation rows alone: where the flip term helps, where not."""
  if not effects or all(e["flips_with_noise"] is None and e["flips_no_noise"] is None
                        for e in effects):
    return "Not enough paired runs (>= 2 seeds of the 2x2 ablation) to answer yet."
  sentences = [s for s in [headline(effects)] if s]
  for model, regime in sorted({(e["model"], e["regime"]) for e in effects}):
    rows = [e for e in effects if e["model"] == model and e["regime"] == regime]
    helps = sorted(set(_where(rows, "flips_with_noise", 1) + _where(rows, "flips_no_noise", 1)),
                   key=float_pct)
    hurts = sorted(set(_where(rows, "flips_with_noise", -1) + _where(rows, "flips_no_noise", -1)),
                   key=float_pct)
    paired_rows = [e for e in rows if e["flips_no_noise"] or e["flips_with_noise"]]
    neutral = [_pct(e) for e in paired_rows if _pct(e) not in helps + hurts]
    unpaired = [_pct(e) for e in rows if e not in paired_rows]
    noise_helps, noise_hurts = _where(rows, "noise", 1), _where(rows, "noise", -1)
    parts = [f"**{model}, {regime} regime.** The flip term (hybrid − magnitude, paired by seed, "
             f"with and without noise) "
             + (f"helps at {', '.join(helps)} (95% CI above 0)" if helps else "helps at no target")
             + (f"; hurts at {', '.join(hurts)} (CI below 0)" if hurts else "")
             + (f"; is within noise at {', '.join(neutral)}" if neutral else "")
             + (f"; has fewer than 2 paired seeds yet at {', '.join(unpaired)}" if unpaired else "")
             + "."]
    parts.append("FlipOut's gradient noise (magnitude_noise − magnitude) "
                 + (f"helps at {', '.join(noise_helps)}" if noise_helps else "helps at no target")
                 + (f" and hurts at {', '.join(noise_hurts)}" if noise_hurts else "") + ".")
    recent_helps, recent_hurts = _where(rows, "recent_flips", 1), _where(rows, "recent_flips", -1)
    if any(e["recent_flips"] for e in rows):
      parts.append("RecentFlips (flips since the last event, then |w|) against magnitude "
                   + (f"helps at {', '.join(recent_helps)}" if recent_helps
                      else "helps at no target")
                   + (f" and hurts at {', '.join(recent_hurts)}" if recent_hurts else "") + ".")
    best = [e for e in rows if e["flipout_vs_best"] is not None]
    if best:
      parts.append("FlipOut against the best method without flips at the same budget: " + "; ".join(
          f"{_pct(e)} {ci_text(e['flipout_vs_best'])} points vs {e['best_no_flips']}"
          for e in best) + ".")
    sentences.append(" ".join(parts))
  return "\n\n".join(sentences)


def float_pct(text):
  return float(text.rstrip("%"))


def erk_start(agg, regime="flipout"):
  """The sparse starts with ERK densities against their plain form, per model and
  target: one sentence, the paired differences (points, 95% CI), or None."""
  parts = []
  for model, target in sorted({(k[0], k[2]) for k in agg
                               if k[1] == regime and k[3].endswith("_erk")}):
    cells = []
    for base in ("snip", "set", "rigl"):
      erk, plain = (agg.get((model, regime, target, m)) for m in (base + "_erk", base))
      diff = paired(erk["accuracy"], plain["accuracy"]) if erk and plain else None
      if diff:
        cells.append(f"{base} {ci_text(diff)}")
    if cells:
      parts.append(f"{model} {100 * target:g}%: " + ", ".join(cells))
  if not parts:
    return None
  return ("**Sparse starts, ERK against plain** (SNIP: ranked inside each layer at its ERK "
          "share against one global ranking; SET/RigL: ERK densities against one sparsity for "
          "every layer; paired by seed, points, 95% CI): " + "; ".join(parts) + ".")
