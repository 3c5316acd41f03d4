"""Fuzzing in CI, bounded in time (issue 15, item 10): hypothesis strategies for the JSONL
reader, the HJ 212 parser and reassembler, the expression language and the YAML loaders.

Properties: no crash (only the documented error of each layer), no hang (every example within
its deadline), counts add up, and every record validates against its schema (the suite's
record check in conftest.py sees every record made here). Hypothesis runs derandomized with
the suite's profile (conftest.py), so CI runs the same examples every time; each test's
example count keeps it within a few seconds (HYPOTHESIS_PROFILE=explore searches afresh).
"""

from __future__ import annotations

import json
from datetime import timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SUBJECT, registration
from engine import Engine, JsonlFiles, Quarantined, load_plugins
from engine.ingest import read_jsonl
from engine.ingest.hj212 import Registry, RegistryError, ingest_numbered
from engine.ingest.hj212.protocol import build_packet
from engine.judge import RulePackError, parse_pack
from engine.judge.expressions import ExpressionError, compile_expression
from engine.plugins import RulePackSource
from engine.validate.yamlsafe import YamlError, load_yaml

PLUGINS = load_plugins()
SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]


def fast(examples: int) -> settings:
    """Bounded: `examples` per run, each within 2 s."""
    return settings(max_examples=examples, deadline=timedelta(seconds=2), suppress_health_check=SUPPRESS)

# ---- the JSONL reader and the engine behind it ------------------------------------------------

BASE = [
    {"specversion": "1.0", "id": "r-1", "source": "registry", "type": "enterprise.registered", "subject": SUBJECT,
     "time": "2024-03-01T08:00:00+08:00", "data": registration("foundry")},
    {"specversion": "1.0", "id": "e-1", "source": "cems", "type": "emission.measured", "subject": SUBJECT,
     "time": "2024-03-01T10:00:00+08:00",
     "data": {"outlet": "DA001", "process": "melting.cupola.cold_blast", "pollutant": "a34013", "value": 35,
              "unit": "mg/m3", "period": "hour", "o2_percent": 18.0}},
    {"specversion": "1.0", "id": "w-1", "source": "cems", "type": "discharge.measured", "subject": SUBJECT,
     "time": "2024-03-01T10:00:00+08:00",
     "data": {"outlet": "DW001", "point": "plant", "destination": "direct", "pollutant": "w01018", "value": 80,
              "unit": "mg/L", "period": "day", "volume_m3": 100, "production": {"quantity": 2, "unit": "t"}}},
    {"specversion": "1.0", "id": "i-1", "source": "inspect", "type": "inspection.recorded", "subject": SUBJECT,
     "time": "2024-03-02T10:00:00+08:00", "data": {"result": "fail", "violations": ["x"]}},
]
ODD_VALUES = st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.none(), st.booleans(),
                       st.just(10 ** 30), st.just(1e308), st.just(-0.0), st.lists(st.integers(), max_size=3))


@st.composite
def event_line(draw) -> bytes:
    """One line: a valid event, an event with one field changed, or damaged bytes."""
    event = json.loads(json.dumps(draw(st.sampled_from(BASE))))
    event["id"] = draw(st.sampled_from(["a", "b", "c", event["id"], "x" * 300]))
    kind = draw(st.integers(0, 9))
    if kind == 1:
        event["data"][draw(st.sampled_from(sorted(event["data"])))] = draw(ODD_VALUES)
    elif kind == 2:
        event[draw(st.sampled_from(sorted(event)))] = draw(ODD_VALUES)
    elif kind == 3:
        event["time"] = draw(st.sampled_from(["2999-01-01T00:00:00+08:00", "1970-01-01T00:00:00Z", "2024-13-01T00:00:00Z",
                                              "2024-03-01T10:00:00+08:00", "2025-01-01T00:00:00+08:00"]))
    text = json.dumps(event, ensure_ascii=draw(st.booleans())).encode()
    if kind == 4:  # a repeated key
        text = text.replace(b'"data": {', b'"data": {"value": 1, ', 1)
    elif kind == 5:  # damaged bytes
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.binary(max_size=8)) + text[at + draw(st.integers(0, 8)):]
    elif kind == 6:
        text = draw(st.sampled_from([b"", b"\xef\xbb\xbf" + text, b"[" * 2000 + b"]" * 2000, b"\xff\xfe", b"null",
                                     b'{"a":' * 300, text + b" trailing"]))
    return text.replace(b"\n", b" ")


@fast(60)
@given(st.lists(event_line(), min_size=1, max_size=25), st.integers(1, 8))
def test_fuzz_the_jsonl_reader_and_the_engine(tmp_path_factory, lines, batch_size):
    path = tmp_path_factory.mktemp("fuzz") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    per_event, batch = Engine(plugins=PLUGINS), Engine(plugins=PLUGINS)
    a = [orjson.dumps(r.to_dict()) for r in per_event.run(read_jsonl([path]))]
    b = [orjson.dumps(r.to_dict()) for r in batch.run_batch(JsonlFiles([path], block_bytes=64), batch_size=batch_size)]
    assert a == b
    summary = per_event.summary
    assert summary.balanced() and summary.read == len(lines)
    assert summary.quarantined == sum(1 for r in a if r.startswith(b'{"record":"quarantine"'))


# ---- the HJ 212 parser and reassembler ---------------------------------------------------------

STATIONS = [("3302FDY00000000000000001", "123456", "31", "a34013"), ("3302DYE00000000000000001", "111111", "32", "w01018")]


@st.composite
def hj212_stream(draw) -> list[bytes]:
    """Reads of a stream: packets (some split into parts, some damaged) and garbage, cut anywhere."""
    pieces = []
    for n in range(draw(st.integers(1, 8))):
        mn, pw, st_code, code = draw(st.sampled_from(STATIONS))
        qn = f"2024030110{n:07d}"
        split = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(0, 5))))
        head = f"QN={qn};ST={st_code};CN={draw(st.sampled_from(['2011', '2051', '2061', '2031', '9999']))};PW={pw};MN={mn};" \
               f"Flag={draw(st.sampled_from([4, 5, 6, 7, 9]))};"
        if split is not None:
            head += f"PNUM={split[0]};PNO={split[1]};"
        value = draw(st.sampled_from(["35", "-1", "1e308", "abc", "", "9" * 40, "0.5"]))
        body = head + f"CP=&&DataTime={qn[:14]};{code}-Avg={value},{code}-Flag={draw(st.sampled_from('NFTX'))}&&"
        packet = build_packet(body)
        damage = draw(st.integers(0, 6))
        if damage == 1:
            packet = packet[: draw(st.integers(0, len(packet)))]
        elif damage == 2:
            at = draw(st.integers(0, len(packet)))
            packet = packet[:at] + draw(st.binary(max_size=6)) + packet[at:]
        pieces.append(packet)
        if draw(st.booleans()):
            pieces.append(draw(st.binary(max_size=30)))
    data = b"".join(pieces)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


@fast(100)
@given(hj212_stream())
def test_fuzz_the_hj212_parser_and_reassembler(reads):
    registry = Registry.load("tests/data/hj212/registry.yaml")
    outputs = list(ingest_numbered(reads, registry, source="fuzz"))
    by_number: dict[int, list[object]] = {}
    for number, item in outputs:
        by_number.setdefault(number, []).append(item)
        if isinstance(item, Quarantined):
            item.to_dict()  # checked against schemas/quarantine.schema.json by the suite
    for number, items in by_number.items():  # a packet became events, or exactly one quarantine record
        quarantined = [i for i in items if isinstance(i, Quarantined)]
        assert number >= 1 and (not quarantined or items == quarantined[:1]), items
    engine = Engine(plugins=PLUGINS)  # the events the packets became, through the engine: counts add up
    items = [item if isinstance(item, Quarantined) else orjson.dumps(item) for _, item in outputs]
    records = list(engine.run(items))
    assert engine.summary.balanced() and engine.summary.read == len(items)
    assert sum(isinstance(r, Quarantined) for r in records) == engine.summary.quarantined


# ---- the expression language -------------------------------------------------------------------

TOKENS = ["judged", "limit", "data.value", "data.flag", "enterprise.in_park", "params.x", "1", "2.5", "1e3", "'N'",
          "\"S\"", "true", "false", "null", "and", "or", "not", "in", "[1, 'a']", "(", ")", "+", "-", "*", "/", ">",
          ">=", "<", "<=", "==", "!=", ",", "min(", "max(", "abs(", "present(", "9" * 50, "x y", "@", "'unterminated"]
ROOTS = frozenset({"judged", "limit", "data", "enterprise", "params"})


@st.composite
def expression_text(draw) -> str:
    tokens = draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=60))
    text = " ".join(tokens)
    if draw(st.integers(0, 9)) == 0:  # sometimes very deep or very long
        text = draw(st.sampled_from(["(" * 500 + "1" + ")" * 500, "not " * 500 + "true", " + ".join(["judged"] * 2000),
                                     "judged > " + "9" * 100_000]))
    return text


SCOPES = st.fixed_dictionaries({
    "judged": ODD_VALUES, "limit": ODD_VALUES,
    "data": st.dictionaries(st.sampled_from(["value", "flag"]), ODD_VALUES, max_size=2),
    "enterprise": st.one_of(st.none(), st.dictionaries(st.just("in_park"), st.booleans())),
    "params": st.dictionaries(st.just("x"), ODD_VALUES),
})


@fast(400)
@given(expression_text(), SCOPES)
def test_fuzz_the_expression_language(text, scope):
    try:
        compiled = compile_expression(text, ROOTS)
    except ExpressionError as exc:
        assert exc.reason and len(str(exc)) < 1000
        return
    compiled(scope)  # a compiled condition answers for any scope: no exception


# ---- the YAML loaders ----------------------------------------------------------------------------

YAML_PIECES = ["a: 1", "b: [1, 2]", "&x {c: 3}", "d: *x", "e: !!python/object:os.system x", "f: " + "9" * 5000,
               "g: .nan", "h: 1e999", "- x", "  - y", "i: 'quoted'", "j: {k: [l, m]}", "\t", ":", "---", "...",
               "n: &a [1]", "o: [*a, *a, *a, *a]", "p: " + "[" * 80 + "]" * 80, "<<: *x", "q: 2024-03-01"]


@st.composite
def yaml_text(draw) -> str:
    if draw(st.booleans()):
        data = draw(st.recursive(ODD_VALUES.filter(lambda v: not isinstance(v, list)),
                                 lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                                 max_leaves=20))
        import yaml

        return yaml.safe_dump(data)
    return "\n".join(draw(st.lists(st.sampled_from(YAML_PIECES), min_size=1, max_size=12)))


@fast(200)
@given(yaml_text())
def test_fuzz_the_yaml_loaders(tmp_path_factory, text):
    try:
        load_yaml(text, "fuzz.yaml")
    except YamlError as exc:
        assert str(exc).startswith("fuzz.yaml")
    with pytest.raises(RulePackError):  # no fuzzed text is a valid foundry pack
        parse_pack(RulePackSource("foundry", "fuzz.yaml", text))
    path = tmp_path_factory.mktemp("yaml") / "stations.yaml"
    path.write_text(text)
    try:
        Registry.load(path)
    except RegistryError as exc:
        assert str(path) in str(exc)
