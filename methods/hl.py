"""HL, high loss (the XMAS paper's comparison): rank the pool by the mean answer-token cross-entropy of the target
fine-tuned on the whole pool and keep the highest band.

The XMAS paper scores HL (and MP, the middle perplexity band: perplexity with model target_full) with the target
model trained on the full data, so the selection costs a full-data training before the subset's own: no speed-up
over training on everything (the cost table counts the full-data run in the instance's cost). model: proxy
scores with the shared fine-tuned proxy instead, the cheap reading of the same rule.
"""

from selectbench.selection.ranking import ProxyStatisticRanking


class HighLoss(ProxyStatisticRanking):
    name = "hl"
    statistic = "nll"  # mean answer-token cross-entropy (padding and prompt tokens masked)
    parameters = {"band": "high", "model": "target_full", "checkpoint": -1}
