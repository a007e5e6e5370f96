"""CLIP score (DataComp's filter; in COINCIDE's table): cosine between CLIP's image embedding and the embedding
of the record's conversation text; keeps the high band by default. Text-only records have no image: their
score is missing (never 0), so they are taken only after every image record."""

from selectbench.selection.ranking import FeatureRanking


class ClipScore(FeatureRanking):
    name = "clip_score"
    feature = statistic = "clip_score"
    requires = ("clip_score",)
    parameters = {"band": "high"}
