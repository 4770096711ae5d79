"""Interests: a two-level taxonomy of the catalog from item text (:mod:`.taxonomy`) and the
prediction of a user's next *novel* interest (:mod:`.novelty`)."""

from explorec.interests.novelty import (
    PREDICTORS,
    CooccurrenceTable,
    NoveltyPredictor,
    PopularNovel,
    TextBilinear,
    Transitions,
    evaluate_predictors,
    novel_transitions,
    novelty_metrics,
)
from explorec.interests.taxonomy import InterestTaxonomy, build_taxonomy, genre_matrix, taxonomy_from_dataset

__all__ = ["PREDICTORS", "CooccurrenceTable", "InterestTaxonomy", "NoveltyPredictor", "PopularNovel",
           "TextBilinear", "Transitions", "build_taxonomy", "evaluate_predictors", "genre_matrix",
           "novel_transitions", "novelty_metrics", "taxonomy_from_dataset"]
