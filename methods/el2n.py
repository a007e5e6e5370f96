"""EL2N (Paul et al. 2021, as in the COINCIDE code): mean over answer tokens of ‖softmax(logits) − onehot‖₂
under the proxy; keeps the high band (hard examples) by default, low and middle on request."""

from selectbench.selection.ranking import ProxyStatisticRanking


class EL2N(ProxyStatisticRanking):
    name = "el2n"
    statistic = "el2n"
    parameters = {"band": "high", "model": "proxy", "checkpoint": -1}
