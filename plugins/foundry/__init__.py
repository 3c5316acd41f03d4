"""rectify plugin: foundry industry (铸造工业).

Covers, as a rule pack (rules.yaml):

- GB 39726-2020 *Emission standard of air pollutants for foundry industry*, Table 1 stack
  limits for every process row (PM, SO2, NOx, lead for electric melting, benzene and NMHC for
  coating lines), judged on 1-hour averages, with the Table 3 reference oxygen for cupolas
  (cold blast 15 %, hot blast 12 %) and gas-fired furnaces (8 %) only; new facilities from
  2021-01-01, existing ones from 2023-07-01. Table 1 "benzene series" is not covered (no
  single HJ 212 code).
- GB 39726-2020 in-plant fugitive limits: PM 5 mg/m3 (1 h), NMHC 10 mg/m3 (1 h) and
  30 mg/m3 (any reading).
- Backward equipment and processes to be eliminated (unverified): cupolas below 3 t/h,
  aluminium-shell induction furnaces over 1 t without magnetic yoke, clay-sand dry moulding.
- Zhejiang minimum annual capacity per cast metal (unverified): iron 4,000 t, steel 3,000 t,
  aluminium 1,000 t, copper 500 t.
- Energy per tonne of good castings against a policy maximum the deploying authority sets
  (pack parameter ``energy_kgce_per_t_castings``, not found in any standard: null until set),
  through the derived metric ``foundry_energy_kgce_per_t``.

It also narrows ``equipment.declared`` attributes for the foundry equipment kinds
(schemas/equipment.schema.json).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.plugins import IndustryPlugin, Metric

__version__ = "0.2.0"

_NAME = "foundry"


def energy_kgce_per_t(data: Mapping[str, Any]) -> float | None:
    """Comprehensive energy per tonne of good castings, kgce/t.

    ``energy_tce * 1000 / output.quantity`` when the output is reported in ``t_castings``;
    None when the output is in another unit, the quantity is zero, or a field is missing.
    """
    output = data.get("output")
    if not isinstance(output, Mapping) or output.get("unit") != "t_castings":
        return None
    energy, quantity = data.get("energy_tce"), output.get("quantity")
    if not _is_number(energy) or not _is_number(quantity) or quantity == 0:
        return None
    return float(energy) * 1000.0 / float(quantity)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


plugin = IndustryPlugin(
    name=_NAME,
    version=__version__,
    title="Foundry industry (GB 39726-2020 and foundry capacity norms)",
    package=__name__,
    industries=("foundry",),
    processes=("sand_reclamation.thermal",),  # the roasting furnace of thermal reclamation (GB 39726 Table 1, note g)
    event_schemas=(("equipment.declared", "schemas/equipment.schema.json"),),
    metrics=(
        Metric(
            plugin=_NAME,
            name="foundry_energy_kgce_per_t",
            event_type="energy.reported",
            compute=energy_kgce_per_t,
            description="energy_tce x 1000 / output.quantity (kgce per tonne of castings); "
            "None unless output.unit is t_castings and the quantity is non-zero",
        ),
    ),
)
