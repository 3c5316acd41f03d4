"""Units and the corrections a reading gets before it is judged.

The HJ 212 unit trap (several water metals reported in µg/L, limits in mg/L) is handled
here once: every reading is converted to its pollutant's canonical unit at normalisation,
and rules convert from there to the unit of their limit.
"""

from __future__ import annotations

# unit -> (dimension, factor to the dimension's canonical unit)
UNITS: dict[str, tuple[str, float]] = {
    "mg/m3": ("air_concentration", 1.0),
    "ug/m3": ("air_concentration", 0.001),
    "mg/L": ("water_concentration", 1.0),
    "ug/L": ("water_concentration", 0.001),
    "-": ("dimensionless", 1.0),
    "%": ("percent", 1.0),
    "m3/s": ("gas_flow", 1.0),
    "L/s": ("water_flow", 1.0),
    "m3": ("volume", 1.0),
}
CANONICAL = {
    "air_concentration": "mg/m3",
    "water_concentration": "mg/L",
    "dimensionless": "-",
    "percent": "%",
    "gas_flow": "m3/s",
    "water_flow": "L/s",
    "volume": "m3",
}
# Pollutants whose dimension is not the default concentration of their medium.
SPECIAL_DIMENSIONS = {
    "a19001": "percent",  # O2
    "a00000": "gas_flow",
    "w00000": "water_flow",
    "w01001": "dimensionless",  # pH
    "w01002": "dimensionless",  # colour, dilution factor
}


class UnitError(ValueError):
    """A unit that cannot express the quantity (e.g. mg/L for a stack pollutant)."""


def dimension_of(pollutant: str) -> str:
    """The physical dimension a pollutant code is measured in."""
    special = SPECIAL_DIMENSIONS.get(pollutant)
    if special:
        return special
    return "air_concentration" if pollutant.startswith("a") else "water_concentration"


def to_canonical(pollutant: str, value: float, unit: str) -> tuple[float, str]:
    """Convert a reading to its pollutant's canonical unit; UnitError if it cannot be."""
    expected = dimension_of(pollutant)
    known = UNITS.get(unit)
    if known is None or known[0] != expected:
        allowed = sorted(u for u, (dim, _) in UNITS.items() if dim == expected)
        raise UnitError(f"{unit!r} is not a unit of {pollutant} (expected {' or '.join(allowed)})")
    return value * known[1], CANONICAL[expected]


def convert(value: float, unit: str, target: str) -> float:
    """Convert between two units of one dimension; UnitError otherwise."""
    if unit == target:
        return value
    source, goal = UNITS.get(unit), UNITS.get(target)
    if source is None or goal is None or source[0] != goal[0]:
        raise UnitError(f"cannot convert {unit!r} to {target!r}")
    return value * source[1] / goal[1]


def o2_factor(measured_o2: float, reference_o2: float) -> float:
    """GB 39726 Table 3: C_ref = C_measured × (21 − O2_ref) / (21 − O2_measured)."""
    return (21.0 - reference_o2) / (21.0 - measured_o2)


def o2_corrected(value: float, measured_o2: float | None, reference_o2: float | None) -> tuple[float, float | None]:
    """The value at reference oxygen and the factor, when both O2 values are known; else (value, None).

    One place for the arithmetic, so `Engine._judge` and the batch path's gates
    (engine/screen.py) compute the same floats.
    """
    if reference_o2 is None or measured_o2 is None:
        return value, None
    factor = o2_factor(measured_o2, reference_o2)
    return value * factor, factor


JUDGED_DIGITS = 9  # measured and judged values are rounded to this many decimals, then compared


def round_judged(value: float) -> float:
    return round(float(value), JUDGED_DIGITS)


# Benchmark volume units: the volume per unit of product, and how many m3 one unit is.
BENCHMARK_UNITS: dict[str, tuple[str, float]] = {
    "m3/t": ("t", 1.0),
    "L/m2": ("m2", 0.001),
}
