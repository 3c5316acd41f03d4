"""A synthetic city for demos, benchmarks and end-to-end tests.

`generate_city` builds a reproducible event log (CloudEvents 1.0 dicts) for a city of
foundries, dyeing mills, surface-treatment shops and other firms, with a few planted
violators whose tags are returned beside the events: the answer key an end-to-end test
compares the engine's findings against.

Ground truth is only useful if it is exact, so the generator keeps two promises:
- a planted violator breaks the rule its tag names (some tags are traps: the cupola PM
  that is under the limit until it is corrected to reference O2, the Cr6+ that is under
  the limit until ug/L is converted to mg/L);
- every other firm stays below 80 % of every limit in domain/standards.md, after O2
  correction (and clear of the energy, water and minimum-capacity norms), so that no
  unplanted finding can appear. Special-process firms are all in
  parks and hold a permit unless a tag says otherwise.

About half of the firms also hold one or two parcels of land the engine knows of
(land.parcel.registered, with standard-land checks and parcels not yet started; docs/demo.md): these are outside the answer
key, which is about the industry plugins' rules.

Only `random.Random(seed)` drives the choices (no wall clock, no hash(), no set or dict
iteration order), so the same arguments always give the same list, and the same bytes
through `write_jsonl`. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.validate.uscc import make_uscc

__all__ = ["AUTHORITY", "DemoCity", "VIOLATION_TAGS", "generate_city", "with_follow_up", "write_jsonl"]

_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_OFFSET = "+08:00"
# the subject of `evaluation.closed`: the city's economy and information bureau (a state organ)
AUTHORITY = make_uscc("11330200MB0000001")

# district -> (administrative division code in the USCC, Chinese name for firm names)
_DISTRICTS: tuple[tuple[str, str, str], ...] = (
    ("Haishu", "330203", "海曙"),
    ("Jiangbei", "330205", "江北"),
    ("Beilun", "330206", "北仑"),
    ("Zhenhai", "330211", "镇海"),
    ("Yinzhou", "330212", "鄞州"),
    ("Fenghua", "330213", "奉化"),
    ("Xiangshan", "330225", "象山"),
    ("Ninghai", "330226", "宁海"),
    ("Yuyao", "330281", "余姚"),
    ("Cixi", "330282", "慈溪"),
)
# the people's government of each district, county or county-level city (approves closures)
_GOVERNMENT = {"海曙": "宁波市海曙区", "江北": "宁波市江北区", "北仑": "宁波市北仑区", "镇海": "宁波市镇海区",
               "鄞州": "宁波市鄞州区", "奉化": "宁波市奉化区", "象山": "象山县", "宁海": "宁海县", "余姚": "余姚市",
               "慈溪": "慈溪市"}
_NAME_WORDS = (
    "鑫达", "恒通", "宏远", "华兴", "永盛", "金源", "瑞丰", "天成", "海诚", "联创",
    "精工", "博远", "嘉禾", "盛泰", "宇航", "东升", "明辉", "信达", "康顺", "伟业",
)
_NAME_SUFFIX = {
    "cupola": "铸造", "induction": "铸造", "gas": "精密铸造", "dyeing": "印染",
    "plating": "电镀", "spray": "涂装", "other": "",
}
_OTHER_TRADES = ("机械", "电子", "塑业", "五金", "服饰", "食品", "包装", "家具")

# Planted violation tags, each with its share of all firms (about 5 % of firms in all).
VIOLATION_TAGS: tuple[tuple[str, float], ...] = (
    ("cupola_pm_o2", 0.003),
    ("cupola_small", 0.003),
    ("induction_no_yoke", 0.003),
    ("clay_sand_dry", 0.003),
    ("foundry_small_capacity", 0.003),
    ("dyeing_cod_direct", 0.004),
    ("dyeing_outside_park", 0.004),
    ("dyeing_water", 0.004),
    ("plating_ni", 0.003),
    ("plating_cr6_ugl", 0.004),
    ("plating_cyanide", 0.003),
    ("plating_outside_park", 0.003),
    ("spray_nmhc", 0.004),
    ("no_permit", 0.005),
)
_ELIGIBLE: dict[str, tuple[str, ...]] = {  # tag -> firm kinds it can be planted on
    "cupola_pm_o2": ("cupola",),
    "cupola_small": ("cupola",),
    "induction_no_yoke": ("induction",),
    "clay_sand_dry": ("cupola", "induction", "gas"),
    "foundry_small_capacity": ("cupola", "induction", "gas"),
    "dyeing_cod_direct": ("dyeing",),
    "dyeing_outside_park": ("dyeing",),
    "dyeing_water": ("dyeing",),
    "plating_ni": ("plating",),
    "plating_cr6_ugl": ("plating",),
    "plating_cyanide": ("plating",),
    "plating_outside_park": ("plating",),
    "spray_nmhc": ("spray",),
    # Only special-process firms: no plugin judges an "other" firm, so a permit-less
    # "other" firm would be ground truth that nothing can find.
    "no_permit": ("cupola", "induction", "gas", "dyeing", "plating", "spray"),
}
_INDUSTRY = {
    "cupola": "foundry", "induction": "foundry", "gas": "foundry", "dyeing": "dyeing",
    "plating": "surface_treatment", "spray": "surface_treatment", "other": "other",
}
# Zhejiang minimum annual capacity of an existing foundry (t); firms are kept at 1.5 to 10
# times it, except foundry_small_capacity, planted at 40-80 % of it.
_MIN_CAPACITY = {"iron": 4000, "steel": 3000, "aluminium": 1000, "copper": 500}


@dataclass(frozen=True, slots=True)
class DemoCity:
    """A generated event log and its answer key (which firms break which rules)."""

    events: list[dict[str, Any]]  # CloudEvents 1.0 dicts, sorted by (time, id)
    violators: dict[str, list[str]]  # enterprise code -> sorted planted violation tags
    enterprises: int


@dataclass(slots=True)
class _Firm:
    """Working state of one firm while its events are generated."""

    code: str
    kind: str  # cupola, induction, gas, dyeing, plating, spray, other
    district: int
    tags: list[str] = field(default_factory=list)


class _Log:
    """Collects events with a generation sequence number, so sorting is total and stable."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, str, str, str, dict[str, Any]]] = []

    def add(self, time: str, source: str, type_: str, subject: str, data: dict[str, Any]) -> None:
        self.rows.append((time, len(self.rows), source, type_, subject, data))

    def events(self) -> list[dict[str, Any]]:
        """Events in time order; ids are given in that order, so (time, id) order holds."""
        self.rows.sort(key=lambda row: (row[0], row[1]))
        return [
            {
                "specversion": "1.0",
                "id": f"demo-{number:09d}",
                "source": source,
                "type": type_,
                "subject": subject,
                "time": time,
                "data": data,
            }
            for number, (time, _, source, type_, subject, data) in enumerate(self.rows, start=1)
        ]


def generate_city(
    *, seed: int = 2024, enterprises: int = 3000, days: int = 2, start: str = "2024-03-04"
) -> DemoCity:
    """Generate a city: registrations the day before `start`, then `days` days of data.

    Tags whose eligible pool is empty (a very small city) are simply not planted.
    """
    if enterprises < 0 or days < 1:
        raise ValueError("enterprises must be >= 0 and days >= 1")
    rng = random.Random(seed)
    first_day = date.fromisoformat(start)
    day_list = [first_day + timedelta(days=d) for d in range(days)]
    hours = [f"{d.isoformat()}T{h:02d}:00:00{_OFFSET}" for d in day_list for h in range(24)]

    firms = _make_firms(rng, enterprises)
    _plant(rng, firms, enterprises)

    log = _Log()
    eve = (first_day - timedelta(days=1)).isoformat()
    period = day_list[-1].strftime("%Y-%m")
    report_time = f"{day_list[-1].isoformat()}T23:30:00{_OFFSET}"
    profiles = []
    for firm in firms:
        profile = _register(rng, log, firm, f"{eve}T08:00:00{_OFFSET}", f"{eve}T09:00:00{_OFFSET}")
        _monitor(rng, log, firm, profile, hours, day_list)
        _energy(rng, log, firm, profile, period, report_time)
        _inspect(rng, log, firm, day_list)
        profiles.append((firm, profile))
    # the mu-average year (the year before `start`): a finance.reported per firm, then the close.
    # A separate generator, so the events above are the same as without the evaluation.
    year = first_day.year - 1
    finance_rng = random.Random(f"{seed}/finance/{year}")
    finance_time = f"{day_list[-1].isoformat()}T23:45:00{_OFFSET}"
    for firm, profile in profiles:
        _finance(finance_rng, log, firm, profile, year, finance_time)
    # the parcels of land the firms hold (docs/demo.md, calibration): again a separate generator
    land_rng = random.Random(f"{seed}/land")
    for number, (firm, profile) in enumerate(profiles):
        _parcels(land_rng, log, firm, profile, number, eve)
    if firms:
        log.add(f"{day_list[-1].isoformat()}T23:59:00{_OFFSET}", "demo/evaluation", "evaluation.closed", AUTHORITY,
                {"year": year})

    violators = {f.code: sorted(f.tags) for f in sorted(firms, key=lambda f: f.code) if f.tags}
    return DemoCity(events=log.events(), violators=violators, enterprises=enterprises)


def with_follow_up(city: DemoCity, *, seed: int = 2024) -> DemoCity:
    """The city a year on: what the bureau does with the decisions of `city`'s log.

    The log is run once (the batch path, in memory) to find the orders and the closure
    proposals it leads to; then, from a separate generator: about 70 % of the orders are
    verified as carried out before their deadline, about 10 % fail a verification first; the
    deadlines of the rest pass (a closure, or the contract's remedies, is proposed); parcels not
    yet started start, report a verified delay, or stay idle (`_land_follow_up`), and a few
    parcels change hands; a month after the last deadline the people's government approves about
    80 % of the proposals (closures, land remedies, idle-land fees and recoveries, lease
    decisions) and withdraws the others; an approved recovery is carried out three weeks later.
    The new events (ids `demo-f…`) follow the city's own, in time order.
    """
    from engine.pipeline import Engine
    from engine.records import Decision

    rng = random.Random(f"{seed}/follow-up")
    orders = [r for r in Engine().run_batch(city.events) if isinstance(r, Decision) and r.deadline is not None]
    log = _Log()
    _land_follow_up(random.Random(f"{seed}/follow-up/land"), log, city.events)
    last = max((o.deadline for o in orders), default=None)
    for order in orders:
        start, deadline = datetime.fromisoformat(order.time), datetime.fromisoformat(order.deadline or "")
        span = (deadline - start).total_seconds()
        roll = rng.random()
        if roll < 0.8:
            if roll >= 0.7:  # a failing verification first: evidence on the order, not a closure
                log.add(_at(start, span * rng.uniform(0.2, 0.4)), "demo/bureau", "rectification.verified", order.enterprise,
                        {"decision": order.id, "passed": False})
            if roll < 0.7 or rng.random() < 0.5:
                log.add(_at(start, span * rng.uniform(0.5, 0.95)), "demo/bureau", "rectification.verified", order.enterprise,
                        {"decision": order.id, "passed": True})
    if last is not None:  # the deadlines of the others pass; closures are proposed at their deadlines
        ahead = [*city.events, *_renumbered(log.events())]
        approval = datetime.fromisoformat(last) + timedelta(days=30)
        proposals = [r for r in Engine().run_batch(ahead, as_of=_at(datetime.fromisoformat(last), 60))
                     if isinstance(r, Decision) and r.status == "proposed" and datetime.fromisoformat(r.time) <= approval]
        governments = {code: name for _, code, name in _DISTRICTS}
        carried_out = []
        for number, proposal in enumerate(proposals, start=1):
            approved = rng.random() < 0.8
            place = governments.get(proposal.enterprise[2:8], "")
            document = f"{place[:1] or '甬'}政发〔{approval.year}〕{number}号"
            log.add(_at(approval, 3600 * (number % 8)), "demo/government", "approval.recorded", proposal.enterprise,
                    {"decision": proposal.id, "approved": approved, "authority": f"{_GOVERNMENT.get(place, '宁波市')}人民政府",
                     "document": document, **({} if approved else {"note": "整改已完成，不予关停"})})
            if approved:
                carried_out.append((approval, proposal, document))
        _recoveries(log, carried_out)
    return DemoCity(events=[*city.events, *_renumbered(log.events())], violators=city.violators,
                    enterprises=city.enterprises)


def _land_follow_up(rng: random.Random, log: _Log, events: list[dict[str, Any]]) -> None:
    """What becomes of parcels not yet started (the follow-up year): about 35 % start before the
    idle-land fee falls due, 25 % between the fee and the recovery, 10 % report a delay caused by
    the government that the authority verifies, the rest stay idle; and a few old parcels are
    transferred to another firm of the city, which registers them under its own code."""
    registered = [e for e in events if e["type"] == "land.parcel.registered"]
    holders = sorted({e["subject"] for e in registered})
    for event in registered:
        data, at = event["data"], datetime.fromisoformat(event["time"])
        if "started_on" in data:
            if rng.random() < 0.003 and len(holders) > 1:  # an old parcel transferred
                to = rng.choice([h for h in holders if h != event["subject"]])
                when = at + timedelta(days=rng.uniform(30, 330))
                log.add(_at(when, 0), "demo/land", "land.parcel.transferred", event["subject"],
                        {"parcel": data["parcel"], "to": to, "basis": f"转让合同 {when.year}-{rng.randint(1, 999):03d}"})
                log.add(_at(when, 86400), "demo/land", "land.parcel.registered", to, dict(data))
            continue
        start = date.fromisoformat(data["contract"]["start_by"])
        fee = datetime.fromisoformat(f"{_years_later(start, 1).isoformat()}T23:59:59{_OFFSET}")
        recovery = datetime.fromisoformat(f"{_years_later(start, 2).isoformat()}T23:59:59{_OFFSET}")
        first = at + timedelta(days=1)
        roll = rng.random()

        def between(low: datetime, high: datetime) -> datetime | None:
            return low + (high - low) * rng.uniform(0.1, 0.9) if high > low else None

        when: datetime | None = None
        inspection: dict[str, Any] = {"parcel": data["parcel"], "stage": "started"}
        if roll < 0.35:
            when = between(first, fee) or between(first, recovery)
        elif roll < 0.6:
            when = between(max(first, fee + timedelta(days=1)), recovery)
        elif roll < 0.7:
            when = between(first, fee) or between(first, recovery)
            cause = rng.choice(("delivery_late", "plan_revised", "petition", "government_other"))
            inspection = {**inspection, "stage": "not_started",
                          "delay": {"cause": cause, "verified": True, "document": f"甬自然资函〔{at.year}〕{rng.randint(1, 99)}号"}}
        if when is not None:
            log.add(_at(when, 0), "demo/land", "land.parcel.inspected", event["subject"], {**inspection, "on": when.date().isoformat()})


def _recoveries(log: _Log, approved: list[tuple[datetime, Any, str]]) -> None:
    """A recovery approved is carried out three weeks later (land.parcel.recovered)."""
    for when, proposal, document in approved:
        if proposal.action == "recover_land" and proposal.parcel:
            log.add(_at(when, 21 * 86400), "demo/land", "land.parcel.recovered", proposal.enterprise,
                    {"parcel": proposal.parcel, "basis": document, "decision": proposal.id, "compensated": False})


def _renumbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Follow-up events get ids of their own (`demo-f…`), apart from the city's."""
    return [{**event, "id": event["id"].replace("demo-", "demo-f")} for event in events]


def _at(start: datetime, seconds: float) -> str:
    """An RFC 3339 time `seconds` after `start`, to the minute."""
    moment = start + timedelta(seconds=seconds)
    return moment.replace(second=0, microsecond=0).isoformat()


def write_jsonl(events: Iterable[dict[str, Any]], path: Path) -> int:
    """Write one compact JSON object per line (UTF-8, \\n); returns the number written."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
            count += 1
    return count


# --- the firms -------------------------------------------------------------------------


def _make_firms(rng: random.Random, n: int) -> list[_Firm]:
    """Industry mix 20/20/20/40; codes are Ningbo-style USCCs, unique within the city."""
    firms: list[_Firm] = []
    seen: set[str] = set()  # membership only, never iterated
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            s = rng.random()
            kind = "cupola" if s < 0.35 else "induction" if s < 0.8 else "gas"
        elif r < 0.4:
            kind = "dyeing"
        elif r < 0.6:
            kind = "plating" if rng.random() < 0.5 else "spray"
        else:
            kind = "other"
        district = rng.randrange(len(_DISTRICTS))
        while True:
            org = "".join(rng.choice(_CODE_CHARS) for _ in range(9))
            code = make_uscc("91" + _DISTRICTS[district][1] + org)
            if code not in seen:
                seen.add(code)
                break
        firms.append(_Firm(code=code, kind=kind, district=district))
    return firms


def _plant(rng: random.Random, firms: list[_Firm], n: int) -> None:
    """Choose violators tag by tag, each from firms not yet tagged (one tag per firm)."""
    for tag, rate in VIOLATION_TAGS:
        kinds = _ELIGIBLE[tag]
        pool = [f for f in firms if f.kind in kinds and not f.tags]
        for firm in rng.sample(pool, min(len(pool), max(1, round(n * rate)))):
            firm.tags.append(tag)


def _register(
    rng: random.Random, log: _Log, firm: _Firm, reg_time: str, eq_time: str
) -> dict[str, Any]:
    """enterprise.registered and equipment.declared; returns what monitoring needs."""
    kind, tags = firm.kind, firm.tags
    district, _, district_cn = _DISTRICTS[firm.district]
    trade = _NAME_SUFFIX[kind] or rng.choice(_OTHER_TRADES)
    special = kind != "other"
    in_park = not ("dyeing_outside_park" in tags or "plating_outside_park" in tags)
    if not special:
        in_park = rng.random() < 0.4
    if rng.random() < 0.85:  # existing facility under every standard
        eia = date(2003, 1, 1) + timedelta(days=rng.randrange(16 * 365))
    else:  # new facility under every standard (EIA after GB 39726 took effect)
        eia = date(2021, 6, 1) + timedelta(days=rng.randrange(945))
    data: dict[str, Any] = {
        "name": f"宁波市{district_cn}{rng.choice(_NAME_WORDS)}{trade}有限公司",
        "industry": _INDUSTRY[kind],
        "district": district,
        "in_park": in_park,
        "land_area_mu": round(min(200.0, max(1.0, rng.lognormvariate(2.8, 0.9))), 1),
        "eia_approved_on": eia.isoformat(),
        "permits": {"emission_permit": "no_permit" not in tags},
        "scale": "above" if rng.random() < (0.55 if special else 0.45) else "below",
    }
    profile: dict[str, Any] = {"kind": kind, "scale": data["scale"], "land_area_mu": data["land_area_mu"]}
    equipment: list[tuple[str, str, dict[str, Any]]] = []

    if kind in ("cupola", "induction", "gas"):
        if kind == "cupola":
            metal = "iron"
            blast = "cold" if "cupola_pm_o2" in tags or rng.random() < 0.6 else "hot"
            small = "cupola_small" in tags
            rate = rng.uniform(1.0, 2.5) if small else rng.uniform(5.0, 15.0)
            equipment.append(("CUP01", "cupola", {"melt_rate_t_h": round(rate, 1), "blast": blast}))
            profile["process"] = f"melting.cupola.{blast}_blast"
        elif kind == "induction":
            metal = rng.choice(("iron", "steel", "aluminium", "copper"))
            if "induction_no_yoke" in tags:
                shell, capacity, yoke = "aluminium", rng.choice((1.5, 2.0, 3.0, 5.0)), False
            elif rng.random() < 0.6:
                shell, capacity, yoke = "steel", rng.choice((1.0, 2.0, 3.0, 5.0, 10.0)), rng.random() < 0.7
            elif rng.random() < 0.5:  # small aluminium-shell furnace: allowed without yoke
                shell, capacity, yoke = "aluminium", rng.choice((0.25, 0.5, 0.75)), rng.random() < 0.3
            else:
                shell, capacity, yoke = "aluminium", rng.choice((1.5, 2.0, 3.0)), True
            equipment.append(
                ("IND01", "induction_furnace", {"capacity_t": capacity, "shell": shell, "yoke": yoke})
            )
            profile["process"] = "melting.electric"
        else:
            metal = rng.choice(("aluminium", "copper"))
            equipment.append(
                ("GAS01", "gas_furnace", {"capacity_t": rng.choice((0.5, 1.0, 2.0)), "fuel": "natural_gas"})
            )
            profile["process"] = "melting.gas_furnace"
        minimum = _MIN_CAPACITY[metal]
        share = (0.4, 0.8) if "foundry_small_capacity" in tags else (1.5, 10.0)
        capacity_t = round(minimum * rng.uniform(*share), -1)
        data["metal"] = metal
        data["annual_capacity_t"] = capacity_t
        profile["monthly_t"] = capacity_t / 12
        if "clay_sand_dry" in tags:
            equipment.append(("MLD01", "moulding_line", {"process": "clay_sand_dry"}))
        elif rng.random() < 0.6:
            equipment.append(("MLD01", "moulding_line", {"process": rng.choice(("green_sand", "resin"))}))
        profile["moulding"] = any(kind_ == "moulding_line" for _, kind_, _ in equipment)
    elif kind == "dyeing":
        data["sub_sector"] = rng.choices(("cotton_woven", "knitted", "silk_woven"), (50, 35, 15))[0]
        if "dyeing_water" in tags:  # the water benchmark is for cotton woven fabric
            data["sub_sector"] = "cotton_woven"
        for number in range(1, rng.randint(1, 3) + 1):
            equipment.append((
                f"DYE{number:02d}",
                "dyeing_machine",
                {"machine_type": rng.choice(("overflow", "airflow", "jigger")),
                 "capacity_kg": rng.choice((250, 500, 1000))},
            ))
        if "dyeing_cod_direct" in tags:
            destination = "municipal"
        elif not in_park:
            destination = rng.choice(("municipal", "direct"))
        else:
            destination = rng.choices(("park_plant", "municipal", "direct", "indirect"), (45, 35, 12, 8))[0]
        profile["destination"] = destination
        profile["sub_sector"] = data["sub_sector"]
    elif kind == "plating":
        equipment.append((
            "PLT01",
            "plating_line",
            {"cyanide": "plating_cyanide" in tags, "layers": rng.choice(("single", "multi")),
             "metal": rng.choice(("zinc", "nickel", "chromium", "copper"))},
        ))
        profile["layers"] = equipment[-1][2]["layers"]
        profile["destination"] = (
            rng.choice(("municipal", "direct"))
            if not in_park
            else rng.choices(("park_plant", "municipal", "direct"), (60, 30, 10))[0]
        )
    elif kind == "spray":
        equipment.append((
            "SPB01",
            "spray_booth",
            {"coating": rng.choice(("solvent", "water", "powder")),
             "voc_treatment": rng.choice(("rto", "rco", "activated_carbon"))},
        ))

    log.add(reg_time, "demo/registry", "enterprise.registered", firm.code, data)
    for equipment_id, eq_kind, attributes in equipment:
        log.add(
            eq_time,
            "demo/registry",
            "equipment.declared",
            firm.code,
            {"equipment_id": equipment_id, "kind": eq_kind, "status": "active", "attributes": attributes},
        )
    return profile


# --- monitoring ------------------------------------------------------------------------


def _flag(rng: random.Random) -> str:
    """HJ 212 flag: N mostly, ~1 % maintenance, fault or calibration."""
    return rng.choice("MDC") if rng.random() < 0.01 else "N"


def _pick_hours(rng: random.Random, n_hours: int, low: int, high: int) -> set[int]:
    """Which hour indices carry a planted exceedance (used for membership only)."""
    return set(rng.sample(range(n_hours), min(n_hours, rng.randint(low, high))))


def _monitor(
    rng: random.Random,
    log: _Log,
    firm: _Firm,
    profile: dict[str, Any],
    hours: Sequence[str],
    days: Sequence[date],
) -> None:
    """Hourly stack / fugitive data and daily discharges, by kind."""
    kind, code, tags = firm.kind, firm.code, firm.tags
    add = log.add
    if kind in ("cupola", "induction", "gas"):
        process = profile["process"]
        # (O2 range, reference O2, corrected PM / SO2 / NOx ranges), all < 80 % of the limit
        if process == "melting.cupola.cold_blast":
            o2_range, ref, pm, so2, nox = (16.0, 19.0), 15.0, (8, 28), (30, 140), (40, 220)
        elif process == "melting.cupola.hot_blast":
            o2_range, ref, pm, so2, nox = (13.0, 16.0), 12.0, (8, 28), (30, 140), (40, 220)
        elif process == "melting.gas_furnace":
            o2_range, ref, pm, so2, nox = (8.0, 11.0), 8.0, (5, 22), (5, 60), (40, 250)
        else:
            o2_range, ref, pm, so2, nox = None, 0.0, (3, 20), None, None
        trap = _pick_hours(rng, len(hours), 4, 8) if "cupola_pm_o2" in tags else set()
        for index, time in enumerate(hours):
            flag = _flag(rng)
            if o2_range is None:
                value = round(rng.uniform(*pm), 1)
                add(time, "demo/cems", "emission.measured", code, {
                    "outlet": "DA001", "process": process, "pollutant": "a34013", "value": value,
                    "unit": "mg/m3", "period": "hour", "flag": flag})
            else:
                if index in trap:  # under 40 as measured, 53-84 at 15 % reference O2
                    o2 = round(rng.uniform(17.8, 18.3), 1)
                    pm_value = round(rng.uniform(30.0, 38.0), 1)
                    flag = "N"
                else:
                    o2 = round(rng.uniform(*o2_range), 1)
                    pm_value = round(rng.uniform(*pm) * (21 - o2) / (21 - ref), 1)
                readings = [("a34013", pm_value)]
                if so2 is not None:
                    readings.append(("a21026", round(rng.uniform(*so2) * (21 - o2) / (21 - ref), 1)))
                    readings.append(("a21002", round(rng.uniform(*nox) * (21 - o2) / (21 - ref), 1)))
                for pollutant, value in readings:
                    add(time, "demo/cems", "emission.measured", code, {
                        "outlet": "DA001", "process": process, "pollutant": pollutant,
                        "value": value, "unit": "mg/m3", "period": "hour", "o2_percent": o2,
                        "flag": flag})
            if profile["moulding"]:
                add(time, "demo/cems", "emission.measured", code, {
                    "outlet": "DA002", "process": "moulding", "pollutant": "a34013",
                    "value": round(rng.uniform(3, 20), 1), "unit": "mg/m3", "period": "hour",
                    "flag": _flag(rng)})
    elif kind == "spray":
        trap = _pick_hours(rng, len(hours), 6, 12) if "spray_nmhc" in tags else set()
        for index, time in enumerate(hours):
            if index in trap:
                value, flag = round(rng.uniform(11.0, 18.0), 1), "N"
            else:
                value, flag = round(rng.uniform(2.0, 7.0), 1), _flag(rng)
            add(time, "demo/cems", "emission.measured", code, {
                "outlet": "FG001", "process": "fugitive", "pollutant": "a24088", "value": value,
                "unit": "mg/m3", "period": "hour", "flag": flag})
    elif kind == "plating":
        for time in hours:
            flag = _flag(rng)
            for pollutant, low, high in (("a21024", 5.0, 20.0), ("a34039", 2.0, 12.0)):
                add(time, "demo/cems", "emission.measured", code, {
                    "outlet": "DA001", "process": "plating", "pollutant": pollutant,
                    "value": round(rng.uniform(low, high), 1), "unit": "mg/m3", "period": "hour",
                    "flag": flag})
        destination = profile["destination"]
        water = random.Random(f"water/{code}")
        for day in days:
            time = f"{day.isoformat()}T00:00:00{_OFFSET}"
            # the day's plated area and wastewater: usually under the GB 21900 benchmark volume
            # (single 200 / multi 500 L per m2), about 1 firm in 10 over it
            area = round(water.uniform(200, 3000))
            per_m2 = {"single": 200, "multi": 500}[profile["layers"]] * (water.uniform(1.05, 1.4) if water.random() < 0.1
                                                                         else water.uniform(0.5, 0.95))
            volume = {"volume_m3": round(area * per_m2 / 1000, 1),
                      "production": {"quantity": area, "unit": "m2", "category": profile["layers"]}}
            ni = rng.uniform(0.6, 1.2) if "plating_ni" in tags else rng.uniform(0.05, 0.3)
            # HJ 212 reports Cr6+ in ug/L: 250-400 ug/L is 0.25-0.4 mg/L, over the 0.2 limit
            cr6 = rng.uniform(250, 400) if "plating_cr6_ugl" in tags else rng.uniform(10, 120)
            for outlet, point, pollutant, value, unit in (
                ("DW002", "workshop", "w20121", round(ni, 2), "mg/L"),
                ("DW002", "workshop", "w20117", round(cr6, 1), "ug/L"),
                ("DW001", "plant", "w01018", round(rng.uniform(20, 60), 1), "mg/L"),
                ("DW001", "plant", "w20122", round(rng.uniform(0.05, 0.3), 2), "mg/L"),
            ):
                add(time, "demo/wastewater", "discharge.measured", code, {
                    "outlet": outlet, "point": point, "destination": destination,
                    "pollutant": pollutant, "value": value, "unit": unit, "period": "day",
                    "flag": "N", **volume})
    elif kind == "dyeing":
        destination = profile["destination"]
        if destination == "park_plant":  # relaxed 500 / 150
            cod, bod = (100, 390), (20, 110)
        elif destination == "indirect":  # other indirect: 200 / 50
            cod, bod = (60, 150), (10, 35)
        else:  # direct, or municipal which must meet the direct limits 80 / 20
            cod, bod = (30, 60), (5, 15)
        water = random.Random(f"water/{code}")
        category = profile["sub_sector"]
        for day in days:
            time = f"{day.isoformat()}T00:00:00{_OFFSET}"
            # the day's output (t) and wastewater: usually under the GB 4287 benchmark volume
            # (cotton woven 140 / knitted 85 / silk woven 300 m3 per t), about 1 firm in 10 over it
            tonnes = round(water.uniform(2, 30), 1)
            per_t = {"cotton_woven": 140, "knitted": 85, "silk_woven": 300}[category] * (
                water.uniform(1.05, 1.3) if water.random() < 0.1 else water.uniform(0.5, 0.95))
            volume = {"volume_m3": round(tonnes * per_t, 1),
                      "production": {"quantity": tonnes, "unit": "t", "category": category}}
            cod_value = rng.uniform(90, 150) if "dyeing_cod_direct" in tags else rng.uniform(*cod)
            for pollutant, value, unit in (
                ("w01018", round(cod_value, 1), "mg/L"),
                ("w21003", round(rng.uniform(1.0, 7.5), 2), "mg/L"),
                ("w01001", round(rng.uniform(6.5, 8.5), 2), "-"),
                ("w01017", round(rng.uniform(*bod), 1), "mg/L"),
            ):
                add(time, "demo/wastewater", "discharge.measured", code, {
                    "outlet": "DW001", "point": "plant", "destination": destination,
                    "pollutant": pollutant, "value": value, "unit": unit, "period": "day",
                    "flag": "N", **volume})


def _energy(
    rng: random.Random, log: _Log, firm: _Firm, profile: dict[str, Any], period: str, time: str
) -> None:
    """One monthly energy.reported per firm, within the (unverified) industry norms."""
    kind = firm.kind
    data: dict[str, Any] = {"period": period}
    if kind in ("cupola", "induction", "gas"):
        tonnes = profile["monthly_t"] * rng.uniform(0.55, 0.9)
        tce_t = {"cupola": (0.35, 0.5), "gas": (0.3, 0.45)}.get(kind, (0.12, 0.2))
        kwh_t = {"cupola": (60, 120), "gas": (80, 150)}.get(kind, (550, 750))
        water = tonnes * rng.uniform(1.0, 3.0)
        data |= {
            "energy_tce": round(tonnes * rng.uniform(*tce_t), 1),
            "electricity_kwh": round(tonnes * rng.uniform(*kwh_t)),
            "value_added_yuan": round(tonnes * rng.uniform(1800, 4000)),
            "water_t": round(water, 1),
            "water_reused_t": round(water * rng.uniform(0.75, 0.9), 1),
            "output": {"quantity": round(tonnes, 1), "unit": "t_castings"},
        }
    elif kind == "dyeing":  # <= 30 kgce and <= 1.6 t water per 100 m, reuse >= 40 %
        fabric = rng.uniform(3000, 40000) * (1.0 if profile["scale"] == "above" else 0.3)
        # dyeing_water: 2.0-2.6 t of fresh water per 100 m (over 1.6); energy and reuse stay
        # within the norms, so the water benchmark is the only energy-category finding
        per_100m = (2.0, 2.6) if "dyeing_water" in firm.tags else (0.8, 1.25)
        water = fabric * rng.uniform(*per_100m)
        data |= {
            "energy_tce": round(fabric * rng.uniform(0.012, 0.022), 1),
            "electricity_kwh": round(fabric * rng.uniform(15, 35)),
            "value_added_yuan": round(fabric * rng.uniform(80, 200)),
            "water_t": round(water, 1),
            "water_reused_t": round(water * rng.uniform(0.75, 0.9), 1),
            "output": {"quantity": round(fabric, 1), "unit": "100m_fabric"},
        }
    elif kind == "plating":  # rinse water 12-22 L/m2, under grade III (40)
        area = rng.uniform(10000, 150000) * (1.0 if profile["scale"] == "above" else 0.3)
        kwh = area * rng.uniform(2, 6)
        water = area * rng.uniform(12, 22) / 1000
        data |= {
            "energy_tce": round(kwh * 0.0001229 + area * rng.uniform(0.0001, 0.0003), 1),
            "electricity_kwh": round(kwh),
            "value_added_yuan": round(area * rng.uniform(15, 40)),
            "water_t": round(water, 1),
            "water_reused_t": round(water * rng.uniform(0.75, 0.9), 1),
            "output": {"quantity": round(area, 1), "unit": "m2_plated"},
        }
    else:  # spray and other firms: no output unit in the contract for them
        size = rng.uniform(0.2, 3.0) * (1.0 if profile["scale"] == "above" else 0.25)
        kwh = size * rng.uniform(50000, 400000)
        water = size * rng.uniform(100, 2000)
        data |= {
            "energy_tce": round(kwh * 0.0001229 + size * rng.uniform(1, 30), 1),
            "electricity_kwh": round(kwh),
            "value_added_yuan": round(size * rng.uniform(300000, 3000000)),
            "water_t": round(water, 1),
            "water_reused_t": round(water * rng.uniform(0.0, 0.5), 1),
        }
    log.add(time, "demo/energy", "energy.reported", firm.code, data)


def _inspect(rng: random.Random, log: _Log, firm: _Firm, days: Sequence[date]) -> None:
    """A few on-site inspections: a third of violators fail, ~2 % of the rest pass."""
    if firm.kind == "other":
        return
    if firm.tags:
        if rng.random() >= 1 / 3:
            return
        data: dict[str, Any] = {"result": "fail", "violations": list(firm.tags),
                                "notes": "on-site inspection found: " + ", ".join(firm.tags)}
    else:
        if rng.random() >= 0.02:
            return
        data = {"result": "pass", "violations": [], "notes": "routine on-site inspection"}
    day = rng.choice(days)
    time = f"{day.isoformat()}T{rng.randint(9, 16):02d}:{rng.choice((0, 15, 30, 45)):02d}:00{_OFFSET}"
    log.add(time, "demo/inspection", "inspection.recorded", firm.code, data)


def _years_later(day: date, years: int) -> date:
    """The same date `years` later (29 February: 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _some_day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _parcels(rng: random.Random, log: _Log, firm: _Firm, profile: dict[str, Any], number: int, eve: str) -> None:
    """For about half of the firms (those whose land records the land bureau has linked to their
    credit codes; the others count with their registered land area), one or two parcels holding
    the firm's registered land (docs/demo.md, calibration): about 10 % standard land sold
    2018-2022 with commitments (checked at completion, and once in production for parcels sold
    by 2021; some fall short), 3 % not yet started (agreed start dates 2022-06 to 2024-02), 2 % on
    20-year terms ending 2025-2026 (the lease review falls in the follow-up year), the rest old
    parcels (sold 1995-2017 on 50-year terms, long built)."""
    if rng.random() >= 0.5:
        return
    district_code = _DISTRICTS[firm.district][1]
    area = profile["land_area_mu"]
    shares = [area] if area < 20 or rng.random() >= 0.15 else [round(area * 0.6, 1), round(area - round(area * 0.6, 1), 1)]
    registered = f"{eve}T10:00:00{_OFFSET}"
    for index, mu in enumerate(shares):
        roll = rng.random() if index == 0 else 1.0
        data: dict[str, Any] = {"area_mu": mu, "use": "industrial"}
        checks: list[tuple[str, str, dict[str, Any]]] = []
        if roll < 0.10:  # standard land
            signed = _some_day(rng, date(2018, 6, 1), date(2022, 6, 30))
            start_by = signed + timedelta(days=180)
            complete_by = start_by + timedelta(days=540)
            commitments: dict[str, Any] = {
                "investment_yuan_per_mu": round(rng.uniform(2.5e6, 4.5e6), -4), "floor_area_ratio": round(rng.uniform(1.2, 2.0), 1),
                "tax_yuan_per_mu": round(rng.uniform(2.5e5, 4.5e5), -4), "energy_tce_per_10k_yuan": round(rng.uniform(0.2, 0.5), 2)}
            data |= {"started_on": (start_by - timedelta(days=rng.randrange(0, 60))).isoformat(), "commitments": commitments}
            invested = rng.uniform(0.7, 0.95) if rng.random() < 0.15 else rng.uniform(1.0, 1.25)
            checks.append(("completed", (complete_by + timedelta(days=rng.randrange(30, 90))).isoformat(), {
                "investment_yuan_per_mu": round(commitments["investment_yuan_per_mu"] * invested, -4),
                "floor_area_ratio": round(commitments["floor_area_ratio"] * rng.uniform(1.0, 1.2), 2)}))
            if signed.year <= 2021:
                tax = rng.uniform(0.5, 0.95) if rng.random() < 0.25 else rng.uniform(1.0, 1.4)
                energy = rng.uniform(1.05, 1.3) if rng.random() < 0.1 else rng.uniform(0.7, 1.0)
                on = min(complete_by + timedelta(days=rng.randrange(600, 760)), date(2024, 2, 28))
                checks.append(("in_production", on.isoformat(), {
                    "tax_yuan_per_mu": round(commitments["tax_yuan_per_mu"] * tax, -3),
                    "energy_tce_per_10k_yuan": round(commitments["energy_tce_per_10k_yuan"] * energy, 3)}))
            remedies = ["penalty", "no_renewal"]
            term = 50
        elif roll < 0.13:  # not yet started
            start_by = _some_day(rng, date(2022, 6, 1), date(2024, 2, 28))
            signed = start_by - timedelta(days=180)
            complete_by = start_by + timedelta(days=540)
            data["price_yuan"] = round(mu * rng.uniform(3e5, 6e5), -3)
            remedies, term = ["penalty", "recovery"], 50
        elif roll < 0.15:  # a 20-year term ending in 2025-2026
            signed = _some_day(rng, date(2005, 3, 10), date(2006, 3, 1))
            start_by, complete_by = signed + timedelta(days=180), signed + timedelta(days=720)
            data["started_on"] = (start_by - timedelta(days=rng.randrange(0, 60))).isoformat()
            remedies, term = [], 20
        else:  # an old parcel, long built
            signed = _some_day(rng, date(1995, 1, 1), date(2017, 12, 31))
            start_by, complete_by = signed + timedelta(days=180), signed + timedelta(days=900)
            data["started_on"] = (start_by - timedelta(days=rng.randrange(0, 60))).isoformat()
            remedies, term = [], 50
        contract: dict[str, Any] = {"signed_on": signed.isoformat(), "start_by": start_by.isoformat(),
                                    "complete_by": complete_by.isoformat(),
                                    "expires_on": (_years_later(signed, term) - timedelta(days=1)).isoformat()}
        if "price_yuan" in data:
            contract["price_yuan"] = data.pop("price_yuan")
        if remedies:
            contract["remedies"] = remedies
        parcel = f"{district_code}-{signed.year}-{number:05d}{index}"
        log.add(registered, "demo/land", "land.parcel.registered", firm.code, {"parcel": parcel, **data, "contract": contract})
        for minute, (stage, on, figures) in enumerate(checks):
            log.add(f"{eve}T10:{30 + 10 * minute}:00{_OFFSET}", "demo/land", "land.parcel.inspected", firm.code,
                    {"parcel": parcel, "stage": stage, "on": on, "figures": figures})


def _finance(rng: random.Random, log: _Log, firm: _Firm, profile: dict[str, Any], year: int, time: str) -> None:
    """finance.reported for the mu-average year: six indicators' inputs above size, tax and
    electricity below size. Tax per mu is log-normal (docs/demo.md, calibration): about 4 % of
    the plants of >= 3 mu pay < 40,000 yuan per mu (the low-tax rule), the D class is 5 %."""
    land = profile["land_area_mu"]
    if profile["scale"] == "above":
        tax = land * rng.lognormvariate(12.43, 0.7)  # median about 250,000 yuan/mu
        value_added = tax * rng.uniform(4, 10)
        revenue = value_added * rng.uniform(3, 5)
        energy = value_added / rng.uniform(10_000, 60_000)
        data: dict[str, Any] = {
            "year": year, "tax_yuan": round(tax), "value_added_yuan": round(value_added), "revenue_yuan": round(revenue),
            "rd_expense_yuan": round(revenue * rng.uniform(0, 0.05)),
            "employees_fte": max(5, round(value_added / rng.uniform(150_000, 400_000))),
            "energy_tce": round(energy, 1), "electricity_kwh": round(energy * rng.uniform(2_000, 6_000)),
            "emissions_kg": round(value_added / rng.uniform(20_000, 200_000), 1),
        }
    else:
        tax = land * rng.lognormvariate(11.4, 0.6)  # median about 90,000 yuan/mu
        data = {"year": year, "tax_yuan": round(tax), "revenue_yuan": round(tax * rng.uniform(15, 40)),
                "electricity_kwh": round(tax * rng.uniform(0.5, 4))}
    log.add(time, "demo/finance", "finance.reported", firm.code, data)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.demo OUT.jsonl`: write a demo city (and optionally its answer key)."""
    parser = argparse.ArgumentParser(prog="python -m engine.demo", description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--enterprises", type=int, default=3000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--start", default="2024-03-04")
    parser.add_argument("--violators", type=Path, help="also write the answer key as JSON")
    args = parser.parse_args(argv)
    city = generate_city(seed=args.seed, enterprises=args.enterprises, days=args.days, start=args.start)
    count = write_jsonl(city.events, args.out)
    if args.violators is not None:
        args.violators.write_text(
            json.dumps(city.violators, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    print(f"{count} events, {city.enterprises} enterprises, {len(city.violators)} violators",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
