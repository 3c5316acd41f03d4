"""Stage 3, normalisation: valid events become what rules and windows work on.

In: a valid event. Out: a `Reading` in canonical units (readings.py, with units.py), the
enterprise's registration and equipment remembered (enterprises.py), who holds which parcel of
land and how far it is developed (parcels.py), minute readings folded
into hourly means in event time (windows.py), and the idempotency verdict by event id
(dedupe.py: new, duplicate or conflict).
"""

from engine.normalise.dedupe import DedupeIndex, Seen, Verdict, content_digest, content_digests
from engine.normalise.enterprises import Enterprises
from engine.normalise.parcels import LAND_TYPES, Parcels
from engine.normalise.readings import Reading, epoch_of, plus_days, reading_from_event
from engine.normalise.windows import HourlyAverager, MeanWindows, stream_of

__all__ = [
    "DedupeIndex",
    "Enterprises",
    "HourlyAverager",
    "LAND_TYPES",
    "MeanWindows",
    "Parcels",
    "Reading",
    "Seen",
    "Verdict",
    "content_digest",
    "content_digests",
    "epoch_of",
    "plus_days",
    "reading_from_event",
    "stream_of",
]
