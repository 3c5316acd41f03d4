"""Surface treatment (electroplating and spraying) for rectify.

Covers, in ``rules.yaml``:

- GB 21900-2008 (Emission standard of pollutants for electroplating), Table 2 water limits at
  their monitoring points (workshop outlet: total Cr, Cr(VI), total Ni, total Cd, total Pb;
  plant outlet: total Cu, total Zn, pH, SS, COD_Cr, NH3-N, total N, total P, petroleum oils,
  total cyanide) with the benchmark-water-volume correction per m2 plated; Table 3 special
  limits behind the option ``surface_treatment.gb21900.table3``; Table 5 air limits for
  plating exhaust (HCl, chromic acid mist, sulphuric acid mist, NOx, HCN, fluoride).
- GB 37822-2019 (VOCs fugitive emission control) Annex A: in-plant NMHC, 1-hour average and
  single reading, special limits behind ``surface_treatment.gb37822.special``.
- Process and registry rules (unverified, status U): active cyanide plating lines
  (cleaner-production grades I/II), surface-treatment firms outside an industrial park (the
  programme's relocate-to-park route), water use per m2 plated (cleaner-production grade III).

Not covered: total Ag, total Hg, total Fe, total Al and water fluoride (no HJ 212 code in the
reference table), and the air benchmark exhaust volume (no production on emission events).

The schemas narrow ``equipment.declared`` attributes of ``plating_line`` and ``spray_booth``
and the production category of ``discharge.measured`` when production is in m2.
"""

from __future__ import annotations

from engine.plugins import IndustryPlugin

__version__ = "0.1.0"

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
