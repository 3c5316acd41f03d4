"""Printing and dyeing (印染) plugin for rectify.

Covers, as data in ``rules.yaml``:

- GB 4287-2012 *Discharge standard of water pollutants for textile dyeing and finishing
  industry* with its 2015 amendment: Table 1 (existing facilities until 2014-12-31),
  Table 2 (new facilities from 2013-01-01, existing from 2015-01-01; municipal discharge
  judged on the direct limits, the relaxed COD/BOD5 only for a park plant), Table 3
  special limits behind the option ``dyeing.gb4287.table3``, batik NH3-N/TN limits, and
  the benchmark wastewater volume correction (Table 2 volumes per tonne of product);
- the printing and dyeing industry norms: water and energy per 100 m of fabric and the
  water reuse rate (2017 draft, unverified), and the industrial-park requirement (2023).

It also narrows ``equipment.declared`` attributes for dyeing machines. No derived metrics
are needed: every measure is expressible in the rule language.
"""

from __future__ import annotations

from engine.plugins import IndustryPlugin

__version__ = "0.2.0"

plugin = IndustryPlugin(
    name="dyeing",
    version=__version__,
    title="Printing and dyeing (GB 4287-2012, industry norms)",
    package=__name__,
    industries=("dyeing",),
    event_schemas=(("equipment.declared", "schemas/equipment.declared.schema.json"),),
)
