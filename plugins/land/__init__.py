"""Industrial land for rectify: parcels, standard-land commitments, idle land, lease expiry,
low-efficiency land.

Covers, in ``rules.yaml`` (sources and statuses in docs/land.md):

- Standard land (标准地, Zhejiang): the indicators a parcel was sold with (investment intensity
  and floor area ratio at completion; output, tax, energy per value added and R&D share once in
  production and at periodic reviews), each a finding rule whose limit is the parcel's own
  commitment; a shortfall is a rectification order escalating to the contract's remedies, a
  proposal needing approval. An inspection at a checking stage without the figure of a
  committed indicator is not judged: a data gap (`figure_missing`) citing the rule's basis.
- Idle land (Measures for the Disposal of Idle Land, MLR Decree No. 53, 2012): construction not
  started one year after the agreed date, an idle-land fee; two years, recovery without
  compensation; both proposals needing the people's government's approval, unless an inspection
  records the start in time or a cause the Measures except, verified by the authority.
- Lease expiry (Urban Real Estate Administration Law Art. 22): at the latest date to apply for
  renewal, renewal or no renewal, by the holder's latest mu-average class and its record of
  commitments.
- Low-efficiency land: the parcels of enterprises the programme lists, or that the mu-average
  evaluation puts in class D or lists, for redevelopment, and the parcels they register while
  the listing stands.

The engine keeps the parcels (engine/normalise/parcels.py) from the core event types
``land.parcel.registered``, ``inspected``, ``recovered`` and ``transferred``
(schemas/events/land.parcel.*.schema.json); the decision layer's watches and per-parcel
decisions are generic (engine/decide/). This plugin is rule data only.
"""

from __future__ import annotations

from engine.plugins import IndustryPlugin

__version__ = "0.2.0"

plugin = IndustryPlugin(
    name="land",
    version=__version__,
    title="Industrial land: standard-land commitments, idle land, lease expiry, low-efficiency land",
    package=__name__,
)
