"""The model: pure arithmetic, data frames and parameters in, data frames out.

No store, database, clock, Flask or file: :mod:`.attribution` (votes to window, hall,
township, county and staff at the time of the press), :mod:`.rates` (the one rate and the
one score), :mod:`.heze` (the Heze coefficient model, docs/model.md) and :mod:`.stats`
(Wilson intervals, the chi-square test).
"""

from .heze import (
    COUNT_COLUMNS, EVALUATION_COLUMNS, FLAG_DIFFERS, FLAG_NO_BASE, FLAG_NO_VOTES, FLAG_SEP, FLAG_SMALL,
    REPORTED_COLUMNS, TRIANGULATION_COLUMNS, UNIT_COLUMNS, ModelOutput, Params, channel_score, city_means,
    coefficient, evaluate, evaluation_rate, rank_units, score_reported, score_units, shrink, triangulate,
)
from .rates import RATINGS, satisfaction_rate, score, tally

__all__ = [
    "COUNT_COLUMNS", "EVALUATION_COLUMNS", "FLAG_DIFFERS", "FLAG_NO_BASE", "FLAG_NO_VOTES", "FLAG_SEP", "FLAG_SMALL",
    "RATINGS", "REPORTED_COLUMNS", "TRIANGULATION_COLUMNS", "UNIT_COLUMNS", "ModelOutput", "Params",
    "channel_score", "city_means", "coefficient", "evaluate", "evaluation_rate", "rank_units", "satisfaction_rate",
    "score", "score_reported", "score_units", "shrink", "tally", "triangulate",
]
