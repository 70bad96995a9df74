"""Pairwise precision and recall of identity clusters against a planted truth (which records are the same person)."""

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class PairwiseScores:
    precision: float
    recall: float
    true_pairs: int  # record pairs in one cluster that are one person
    predicted_pairs: int  # record pairs in one cluster
    truth_pairs: int  # record pairs that are one person


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_scores(clusters: pd.DataFrame, truth: pd.DataFrame) -> PairwiseScores:
    """Precision and recall over record pairs: `clusters` has record_kind, record_key, cluster_id; `truth` has
    record_kind, record_key, person_id; records in only one of them are ignored."""
    joined = clusters[["record_kind", "record_key", "cluster_id"]].merge(truth[["record_kind", "record_key", "person_id"]], on=["record_kind", "record_key"])
    predicted = _pairs(joined.groupby("cluster_id").size())
    actual = _pairs(joined.groupby("person_id").size())
    both = _pairs(joined.groupby(["cluster_id", "person_id"]).size())
    return PairwiseScores(both / predicted if predicted else 1.0, both / actual if actual else 1.0, both, predicted, actual)
