"""Stage 2, validation: is this event what the schemas say an event is?

In: a parsed event (a dict). Out: None, or the reason it is invalid ('field.path: what is
wrong'), from the composed JSON Schemas of `schemas/` (envelope, core event types, the
vocabulary narrowed to the loaded plugins, the plugins' own schemas). Formats (RFC 3339,
dates, the unified social credit code) live in formats.py and uscc.py.
"""

from engine.validate.events import CORE_TYPES, EventValidator
from engine.validate.formats import FORMATS, check_date, check_date_time, check_uscc
from engine.validate.schemas import (
    core_validator,
    describe,
    first_unwritable,
    load_core_schema,
    wide_integer,
    without_surrogates,
)
from engine.validate.uscc import is_uscc, make_uscc, uscc_problem

__all__ = [
    "CORE_TYPES",
    "FORMATS",
    "EventValidator",
    "check_date",
    "check_date_time",
    "check_uscc",
    "core_validator",
    "describe",
    "first_unwritable",
    "is_uscc",
    "load_core_schema",
    "make_uscc",
    "uscc_problem",
    "wide_integer",
    "without_surrogates",
]
