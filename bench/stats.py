"""Small helpers shared by the benchmarks."""

import os
import statistics

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "results")


def percentile(values, pct):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


def summary(values):
    if not values:
        return {"n": 0, "p50": None, "p99": None, "min": None, "max": None}
    return {"n": len(values), "p50": round(statistics.median(values), 2),
            "p99": round(percentile(values, 99), 2),
            "min": round(min(values), 2), "max": round(max(values), 2)}


def write_results(name, result, text):
    """bench/results/NAME.json and NAME.md; prints the markdown."""
    import json
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name + ".json"), "w") as fh:
        json.dump(result, fh, indent=2)
    with open(os.path.join(RESULTS, name + ".md"), "w") as fh:
        fh.write(text)
    print(text)


def bootstrap_ratio_ci(num, den, resamples=2000, seed=20240601,
                       level=0.95):
    """Percentile bootstrap interval of median(num) / median(den): each
    list is resampled with replacement on its own, `resamples` times, from
    a fixed seed (the same samples always give the same interval).
    Returns [low, high], or None if either list is empty."""
    import random
    if not num or not den:
        return None
    rng = random.Random(seed)
    ratios = [statistics.median(rng.choices(num, k=len(num)))
              / statistics.median(rng.choices(den, k=len(den)))
              for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    return [round(percentile(ratios, tail), 3),
            round(percentile(ratios, 100 - tail), 3)]


def bootstrap_paired_ratio_ci(num, den, resamples=2000, seed=20240601,
                              level=0.95):
    """Percentile bootstrap interval of the median of the per-pair ratios
    num[i] / den[i] (paired samples: pair i was measured back to back):
    the pairs are resampled with replacement, `resamples` times, from a
    fixed seed.  Returns [low, high], or None without pairs."""
    import random
    pairs = [n / d for n, d in zip(num, den) if d]
    if not pairs:
        return None
    rng = random.Random(seed)
    medians = [statistics.median(rng.choices(pairs, k=len(pairs)))
               for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    return [round(percentile(medians, tail), 3),
            round(percentile(medians, 100 - tail), 3)]
