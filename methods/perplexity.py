"""Perplexity: rank by the mean answer-token cross-entropy (assistant tokens only, padding masked) and keep a band;
the middle band by default (the XMAS paper's "MP" baseline; Marion et al. 2023, COINCIDE). Scored by the shared
fine-tuned proxy by default; model: target_full scores with the target fine-tuned on the whole pool, as the XMAS
paper's MP does (a full-data training first: no speed-up, see methods/hl.py)."""

from selectbench.selection.ranking import ProxyStatisticRanking


class Perplexity(ProxyStatisticRanking):
    name = "perplexity"
    statistic = "nll"  # log-perplexity: the same ranking as perplexity
    parameters = {"band": "middle", "model": "proxy", "checkpoint": -1}
