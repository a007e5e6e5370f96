"""Perplexity: rank by the proxy's mean answer-token cross-entropy (assistant tokens only, padding masked) and
keep a band; the middle band by default (the XMAS paper's "MP" baseline; Marion et al. 2023, COINCIDE)."""

from selectbench.selection.ranking import ProxyStatisticRanking


class Perplexity(ProxyStatisticRanking):
    name = "perplexity"
    statistic = "nll"  # log-perplexity: the same ranking as perplexity
    parameters = {"band": "middle", "checkpoint": -1}
