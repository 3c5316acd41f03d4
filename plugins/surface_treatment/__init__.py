"""Surface treatment (electroplating and spraying) for rectify.

Covers, in ``rules.yaml``:

- GB 21900-2008 (Emission standard of pollutants for electroplating), Table 2 water limits at
  their monitoring points (workshop outlet, every destination: total Cr, Cr(VI), total Ni,
  total Cd, total Ag, total Pb, total Hg; plant outlet, direct discharge only (§1): total Cu,
  total Zn, total Fe, pH, SS, COD_Cr, NH3-N, total N, total P, petroleum oils, fluoride, total
  cyanide), judged on daily means and on supervisory grab samples (§6.2), with the
  benchmark-water-volume correction per m2 plated on daily values; Table 3 special limits
  behind the option ``surface_treatment.gb21900.table3``; Table 5 air limits for plating
  exhaust (HCl, chromic acid mist, sulphuric acid mist, NOx, HCN, fluoride).
- GB 37822-2019 (VOCs fugitive emission control) Annex A: in-plant NMHC, 1-hour average and
  single reading, special limits behind ``surface_treatment.gb37822.special``.
- Process and registry rules (unverified, status U): active cyanide plating lines (Guiding
  Catalogue for Industrial Structure Adjustment, eliminated category, with its exceptions),
  surface-treatment firms outside an industrial park (the programme's relocate-to-park route),
  water use per m2 plated (cleaner-production grade III).

Not covered: total Al (no code in the HJ 212-2017 pollutant table), and the air benchmark
exhaust volume (no production on emission events).

The schemas narrow ``equipment.declared`` attributes of ``plating_line`` and ``spray_booth``
and the production category of ``discharge.measured`` when production is in m2.
"""

from __future__ import annotations

from engine.plugins import IndustryPlugin

__version__ = "0.2.0"

plugin = IndustryPlugin(
    name="surface_treatment",
    version=__version__,
    title="Surface treatment: electroplating (GB 21900-2008) and spraying (GB 37822-2019)",
    package=__name__,
    industries=("surface_treatment",),
    event_schemas=(
        ("discharge.measured", "schemas/discharge.schema.json"),
        ("equipment.declared", "schemas/equipment.schema.json"),
    ),
)
