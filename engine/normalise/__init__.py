"""Stage 3, normalisation: valid events become what rules and windows work on.

In: a valid event. Out: a `Reading` in canonical units (readings.py, with units.py), the
enterprise's registration and equipment remembered (enterprises.py), who holds which parcel of
land and how far it is developed (parcels.py), minute readings folded
into hourly means in event time (windows.py), and the idempotency verdict by event id
(dedupe.py: new, duplicate or conflict), and the stream's event-time clock, guarded against
one source moving time for everyone (clock.py).
"""

from engine.normalise.clock import EventClock
from engine.normalise.dedupe import DIGEST, DedupeIndex, IdColumns, Seen, Verdict, canonical_json, content_digest, \
    content_digests, digest_of, digests_of, id_hash, id_hashes
from engine.normalise.enterprises import Enterprises
from engine.normalise.parcels import LAND_TYPES, Parcels
from engine.normalise.readings import Reading, calendar_edge, epoch_of, plus_days, reading_from_event
from engine.normalise.windows import MeanWindows, stream_of

__all__ = [
    "DIGEST",
    "DedupeIndex",
    "EventClock",
    "IdColumns",
    "Enterprises",
    "LAND_TYPES",
    "MeanWindows",
    "Parcels",
    "Reading",
    "Seen",
    "Verdict",
    "calendar_edge",
    "canonical_json",
    "content_digest",
    "content_digests",
    "digest_of",
    "digests_of",
    "epoch_of",
    "id_hash",
    "id_hashes",
    "plus_days",
    "reading_from_event",
    "stream_of",
]
