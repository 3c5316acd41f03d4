"""The durable_rules adapter: a safe way to run correlation rules on the Rete backend.

durable_rules 2.0.28 (the last release) is a fast C Rete core with sharp edges; every row of
the table "durable_rules: what we measured" in DESIGN.md is honoured here, and nowhere else
in the engine touches durable_rules directly (docs/rete.md maps each row to code and test):

- ``SafeHost``: a ``durable.engine.Host`` that starts no threads and no timers, writes every
  message and ruleset definition with ``dumps`` (never ``json.dumps``), runs and drains the
  actions of each post synchronously (posting one at a time gives a replayable action
  order), classifies "not handled"/"already observed" as an ``Outcome`` and turns every action
  exception into a ``ReteFault`` naming ruleset, sid and rule.
- ``SidMap`` / ``ShardedRuleset``: enterprises are sharded over at most 800 sids per ruleset
  copy (the C core caps a ruleset at 1,024 live sids and tells sids apart only by a 32-bit
  FNV-1a hash); sid names are checked collision-free per ruleset copy.
- ``repeat_last_cross_event_tests``: the segfault workaround, a pure function on a ruleset
  definition.
- the second segfault (a retraction after a rule fired): ``SafeHost`` rebuilds a sid in
  which an action ran before it retracts anything there (``SafeHost._rebuild`` says why).

Decision semantics live elsewhere; this module knows nothing about lists, orders or deadlines.
Rule authors: since several enterprises share one sid, every message carries the enterprise
id (``ShardedRuleset`` enforces it) and every rule joining two messages must join on it.
"""

from __future__ import annotations

import copy
import enum
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from json.encoder import encode_basestring as _json_string  # C-accelerated, keeps UTF-8
from typing import Any

import durable_rules_engine as _core
from durable import engine as _dr

__all__ = [
    "MAX_SIDS_PER_RULESET",
    "Outcome",
    "ReteFault",
    "SafeHost",
    "ShardedRuleset",
    "SidMap",
    "SidRef",
    "dumps",
    "fnv1a_32",
    "repeat_last_cross_event_tests",
    "validate_sid",
]

#: The C core has a fixed table of 1,024 live sids per ruleset (the 1,025th raises MemoryError
#: and can break the ruleset); we stay well below it.
MAX_SIDS_PER_RULESET = 800
_HARD_SID_CAP = 1024
_INT64 = (-(2**63), 2**63 - 1)
_SID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


# --------------------------------------------------------------------------- hashing, sids


def fnv1a_32(s: str) -> int:
    """FNV-1a 32-bit of the UTF-8 bytes of ``s``, exactly as durable_rules' ``fnv1Hash32``.

    The C code xors ``*str`` where ``str`` is a ``char *``; ``char`` is signed on x86-64, so a
    byte >= 0x80 is sign-extended before the xor. We copy that, so non-ASCII ids hash alike.
    """
    h = 0x811C9DC5
    for b in s.encode("utf-8"):
        if b >= 0x80:
            b |= 0xFFFFFF00
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def validate_sid(sid: object) -> str:
    """Return ``sid`` if it is a safe sid string, else raise ValueError.

    A malformed sid (not a string, empty, quotes, control characters, very long) can leave
    durable_rules in a bad state that crashes later; we refuse it before it reaches the core.
    """
    if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
        raise ValueError(f"malformed sid {sid!r}: expected 1-64 characters of [A-Za-z0-9_.-]")
    return sid


@dataclass(frozen=True, slots=True)
class SidRef:
    """Where one enterprise's messages go: ruleset copy ``index`` and ``sid`` inside it."""

    index: int
    sid: str


class SidMap:
    """Shards enterprises over a bounded, hash-collision-free set of sids per ruleset copy.

    Why: durable_rules keys state by ``fnv1a_32(sid)`` only (two colliding sids share state)
    and holds at most 1,024 live sids per ruleset. So we never use enterprise ids as sids:
    ``shard = crc32(enterprise) % shards`` (stable across processes, unlike ``hash()``),
    copy ``shard // per_ruleset``, sid ``"s%04d" % (shard % per_ruleset)``; a sid name whose
    FNV-1a hash is already taken in its copy is renamed (``s0042.1``...) until it is unique.
    Live enterprises are tracked so that a shard emptied by ``release`` can be evicted with
    ``delete_state``.
    """

    def __init__(
        self,
        shards: int = MAX_SIDS_PER_RULESET,
        per_ruleset: int = MAX_SIDS_PER_RULESET,
        sid_name: Callable[[int], str] = "s{:04d}".format,
    ) -> None:
        if not 1 <= per_ruleset <= MAX_SIDS_PER_RULESET:
            raise ValueError(f"per_ruleset must be 1..{MAX_SIDS_PER_RULESET}, got {per_ruleset}")
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.shards = shards
        self.per_ruleset = per_ruleset
        self.copies = -(-shards // per_ruleset)
        self._refs: list[SidRef] = []
        taken: list[dict[int, str]] = [{} for _ in range(self.copies)]
        for shard in range(shards):
            index = shard // per_ruleset
            base = validate_sid(sid_name(shard % per_ruleset))
            name, n = base, 0
            while fnv1a_32(name) in taken[index]:
                n += 1
                name = f"{base}.{n}"
            taken[index][fnv1a_32(name)] = name
            self._refs.append(SidRef(index, name))
        self._live: dict[SidRef, set[str]] = {}

    def ref(self, enterprise: str) -> SidRef:
        """The (deterministic) place of ``enterprise``; does not mark it live."""
        if not isinstance(enterprise, str) or not enterprise:
            raise ValueError(f"enterprise id must be a non-empty string, got {enterprise!r}")
        return self._refs[zlib.crc32(enterprise.encode("utf-8")) % self.shards]

    def assign(self, enterprise: str) -> SidRef:
        """The place of ``enterprise``, marked live."""
        ref = self.ref(enterprise)
        self._live.setdefault(ref, set()).add(enterprise)
        return ref

    def release(self, enterprise: str) -> SidRef | None:
        """Forget ``enterprise``; return its SidRef if that sid now holds nobody (evict it)."""
        ref = self.ref(enterprise)
        members = self._live.get(ref)
        if members is None or enterprise not in members:
            return None
        members.discard(enterprise)
        if members:
            return None
        del self._live[ref]
        return ref

    def sids(self, index: int) -> list[str]:
        """All sid names of ruleset copy ``index`` (for audits and tests)."""
        return [r.sid for r in self._refs if r.index == index]

    def live_sids(self, index: int) -> int:
        """How many sids of copy ``index`` currently hold a live enterprise."""
        return sum(1 for r in self._live if r.index == index)


# --------------------------------------------------------------------------- the JSON writer


def _number(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x!r}: durable_rules cannot compare NaN/inf")
    text = repr(x)
    if "e" in text or "E" in text:  # durable_rules rejects exponents (error 204)
        text = format(Decimal(text), "f")
    if "." not in text:
        text += ".0"
    return text


def _write(value: Any, out: list[str], numeric: frozenset[str], key: str | None) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"integer {value} at {key!r} is outside int64: durable_rules would misorder it")
        out.append(str(int(value)))
    elif isinstance(value, float):
        try:
            out.append(_number(value))
        except ValueError as exc:
            raise ValueError(f"{exc} (field {key!r})") from None
    elif isinstance(value, str):
        if key in numeric:
            raise ValueError(f"field {key!r} is numeric but got the string {value!r}: durable_rules would compare it as a number")
        out.append(_json_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for k in sorted(value):
            if not isinstance(k, str):
                raise ValueError(f"JSON object keys must be strings, got {k!r}")
            if not first:
                out.append(",")
            first = False
            out.append(_json_string(k))
            out.append(":")
            _write(value[k], out, numeric, k)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, numeric, key)
        out.append("]")
    else:
        raise ValueError(f"cannot write {type(value).__name__} {value!r} (field {key!r}) to durable_rules")


def dumps(value: Any, numeric_fields: Iterable[str] = ()) -> str:
    """Write ``value`` as JSON that the durable_rules C parser reads back unchanged.

    Keys sorted (canonical bytes); ints as ints (int64 only); finite floats always with a
    '.' and never with an exponent (``1e-05`` -> ``0.00001``, ``1e+16`` ->
    ``10000000000000000.0``); NaN/inf refused; a string in a field named in
    ``numeric_fields`` refused (the core would silently compare ``'41'`` as a number).
    """
    out: list[str] = []
    _write(value, out, frozenset(numeric_fields), None)
    return "".join(out)


# --------------------------------------------------------------------------- segfault workaround


def _is_cross_event_test(test: Any) -> bool:
    """A test whose operand refers to another message (``{"first": "amount"}``) or computes."""
    if not isinstance(test, dict) or len(test) != 1:
        return False
    (key, body), = test.items()
    if key in ("$and", "$or", "$not", "$ex", "$nex"):
        return False
    if key.startswith("$") and isinstance(body, dict) and len(body) == 1:
        body = next(iter(body.values()))  # {"$gt": {"amount": <operand>}}
    return isinstance(body, dict)


def _patch(node: Any) -> Any:
    if isinstance(node, list):
        return [_patch(x) for x in node]
    if not isinstance(node, dict):
        return node
    result = {k: (v if k == "run" else _patch(v)) for k, v in node.items()}
    tests = result.get("$and")
    if isinstance(tests, list):
        cross = [t for t in tests if _is_cross_event_test(t)]
        already = len(tests) >= 2 and tests[-1] == tests[-2] and _is_cross_event_test(tests[-1])
        if cross and not already:
            result["$and"] = [*tests, copy.deepcopy(cross[-1])]
    return result


def repeat_last_cross_event_tests(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a ruleset definition with the last cross-event test of every ``$and``
    appended once more (idempotent; ``run`` callables are kept as they are).

    Why: the C core's ``reduceExpressionSequence`` reads past the end of the expression array
    when the last cross-event test in a ``$and`` is false, and segfaults depending on heap
    layout. The repeated test keeps the read inside the array; the results are the same.
    """
    return {name: _patch(rule) for name, rule in definition.items()}


# --------------------------------------------------------------------------- host


class Outcome(enum.Enum):
    """What the core did with a message (its return code, classified)."""

    HANDLED = "handled"  # matched at least one rule node
    NOT_HANDLED = "not_handled"  # MessageNotHandledException: nothing matched
    OBSERVED = "observed"  # MessageObservedException: same id (or same content) seen before


_CODES = {0: Outcome.HANDLED, 1: Outcome.NOT_HANDLED, 2: Outcome.OBSERVED, 3: Outcome.HANDLED}


class ReteFault(RuntimeError):
    """A rule action raised, or durable_rules itself failed, for one ruleset and sid."""

    def __init__(self, ruleset: str, sid: str | None, rule: str | None, detail: str) -> None:
        self.ruleset, self.sid, self.rule, self.detail = ruleset, sid, rule, detail
        super().__init__(f"rete fault in ruleset {ruleset!r}, sid {sid!r}, rule {rule!r}: {detail}")


_INIT_RULE = "rectify_init_context"  # the host's own rule in every ruleset (SafeHost.delete_state)


def _no_action(c: Any) -> None:
    return None


class _SafeRuleset(_dr.Ruleset):
    """A durable Ruleset whose every JSON goes through ``dumps`` and whose actions are guarded."""

    def __init__(self, name: str, host: SafeHost, definition: Mapping[str, Any], numeric_fields: frozenset[str]) -> None:
        self._actions = {}
        self._name = name
        self._host = host
        self.numeric_fields = numeric_fields
        body: dict[str, Any] = {}
        for rule_name, rule in repeat_last_cross_event_tests(definition).items():
            rule = dict(rule)
            action = rule.pop("run", None)
            if not callable(action) or getattr(action, "__code__", None) is None or action.__code__.co_argcount != 1:
                raise ValueError(f"rule {rule_name!r} of {name!r}: 'run' must be a plain function of one argument (c)")
            self._actions[rule_name] = _dr.Promise(host._guard(name, rule_name, action))
            body[rule_name] = rule
        self._handle = _core.create_ruleset(name, dumps(body, numeric_fields))
        self._definition = body
        # sid -> core state offset of a state where a nested call may have left actions to run
        self.pending: dict[str, int] = {}

    # Nested calls from inside actions (c.assert_fact, c.post, c.retract_fact) land here:
    # written with dumps; "not handled"/"observed" are normal there and do not raise. A handled
    # one may start actions in its state, which run later (``run_pending``), so it is noted.
    def _nested(self, call: Callable[[int, str], tuple[int, int]], message: dict[str, Any]) -> int:
        code, offset = call(self._handle, dumps(message, self.numeric_fields))
        if code != 0:
            return 0
        self.pending[str(message.get("sid", "0"))] = offset  # the core's default sid is "0"
        return offset

    def assert_event(self, message: dict[str, Any]) -> int:
        return self._nested(_core.assert_event, message)

    def assert_fact(self, fact: dict[str, Any]) -> int:
        return self._nested(_core.assert_fact, fact)

    def retract_fact(self, fact: dict[str, Any]) -> int:
        return self._nested(_core.retract_fact, fact)

    def assert_events(self, messages: Any) -> int:
        raise NotImplementedError("batches run actions later; post one message at a time")

    assert_facts = retract_facts = assert_events

    def update_state(self, state: dict[str, Any]) -> Any:
        state["$s"] = 1
        return _core.update_state(self._handle, dumps(state, self.numeric_fields))

    def call(self, function: Callable[[int, str], tuple[int, int]], text: str) -> tuple[int, int]:
        """One call into the C core on this ruleset's handle."""
        return function(self._handle, text)

    def run_pending(self, errors: list[Any]) -> bool:
        """Run the actions pending in one state a nested call touched (the work Host's timer
        thread did); False when none is left.

        Never ``start_action``: it walks the core's list of states, which ``delete_state``
        leaves holding the deleted state (see ``SafeHost._rebuild``); ``start_action_for_state``
        (through ``do_actions``) reads only the live state it is given.
        """
        if not self.pending:
            return False
        sid = next(iter(self.pending))
        self.do_actions(self.pending.pop(sid), lambda e, _s: errors.append(e) if e else None)
        return True

    def delete_state(self, sid: str) -> None:
        self.pending.pop(sid, None)  # the state's offset dies with it (and its pending actions)
        super().delete_state(sid)


@dataclass(slots=True)
class _Ids:
    """Message ids posted to one (ruleset, sid): original id -> id given to the core."""

    given: dict[str, str] = field(default_factory=dict)
    hashes: dict[int, str] = field(default_factory=dict)


class SafeHost(_dr.Host):
    """A durable_rules Host with no background threads, no timers and synchronous actions.

    ``Host.__init__`` normally starts two never-ending ``threading.Timer`` chains (action
    dispatch and timers); ``_run`` is a no-op here. Each ``post``/``assert_fact``/
    ``retract_fact`` validates the sid, writes the message with ``dumps``, runs the actions
    it started, drains any other pending action of that ruleset (``drain_every_post``: the
    actions that nested calls from actions started in other sids; never the core's scan
    over all sids, see ``_SafeRuleset.run_pending``), then checks for faults, all before
    returning, so the caller sees actions in posting order. One thread per host.

    Message ids: the core also keys stored messages by FNV-1a of their id, so two ids that
    collide within one sid make the second fact "already observed". The host remembers the
    ids given to each sid and renames a colliding one (``id~1``); the original id stays
    available in the message as ``id`` is only the core's key (the caller's id is copied to
    ``id_orig`` when renamed). Re-posting the same original id maps to the same key, so true
    duplicates are still reported as ``Outcome.OBSERVED``.
    """

    def __init__(self, drain_every_post: bool = True) -> None:
        self.drain_every_post = drain_every_post
        self._faults: list[ReteFault] = []
        self._ids: dict[tuple[str, str], _Ids] = {}
        self._dirty: set[tuple[str, str]] = set()  # (ruleset, sid) where an action ran since the last rebuild
        self._acted: set[tuple[str, str]] = set()  # (ruleset, sid) whose state has run an action (see delete_state)
        self._muted = False
        self.rebuilds = 0
        super().__init__()

    def _run(self) -> None:  # Host would start two timer threads here
        return None

    # -- registration --------------------------------------------------------------------------

    def register(self, name: str, definition: Mapping[str, Any], numeric_fields: Iterable[str] = ()) -> None:
        """Register one ruleset (plain rules only: no statecharts/flowcharts, no timers)."""
        if name in self._ruleset_directory:
            raise ValueError(f"ruleset {name!r} already registered")
        if _INIT_RULE in definition:
            raise ValueError(f"rule name {_INIT_RULE!r} of {name!r} is the host's own (see delete_state)")
        definition = {**definition, _INIT_RULE: {"all": [{"m": {_INIT_RULE: 1}}], "run": _no_action}}
        ruleset = _SafeRuleset(name, self, definition, frozenset(numeric_fields))
        self._ruleset_directory[name] = ruleset
        self._ruleset_list.append(ruleset)

    def register_rulesets(self, ruleset_definitions: Mapping[str, Any]) -> list[str]:
        for name, definition in ruleset_definitions.items():
            self.register(name, definition)
        return list(ruleset_definitions)

    def load_ruleset(self, ruleset_name: str) -> Any:
        raise KeyError(f"ruleset {ruleset_name!r} is not registered")

    def _guard(self, ruleset: str, rule: str, action: Callable[[Any], None]) -> Callable[[Any], None]:
        faults, dirty = self._faults, self._dirty

        acted = self._acted

        def guarded(c: Any) -> None:
            dirty.add((ruleset, c.s.sid))  # its facts now have stale frame locations (see _rebuild)
            acted.add((ruleset, c.s.sid))
            if self._muted:
                return
            try:
                action(c)
            except Exception as exc:  # surfaced as ReteFault after the post, never swallowed
                faults.append(ReteFault(ruleset, c.s.sid, rule, f"{type(exc).__name__}: {exc}"))

        return guarded

    # -- posting -------------------------------------------------------------------------------

    def post(self, ruleset_name: str, message: dict[str, Any], complete: None = None) -> Outcome:  # type: ignore[override]
        """Post one event (consumed by the first rule that fires)."""
        return self._apply(_core.assert_event, ruleset_name, message, complete)

    def assert_fact(self, ruleset_name: str, fact: dict[str, Any], complete: None = None) -> Outcome:  # type: ignore[override]
        """Assert one fact (stays until retracted; every matching rule fires)."""
        return self._apply(_core.assert_fact, ruleset_name, fact, complete)

    def retract_fact(self, ruleset_name: str, fact: dict[str, Any], complete: None = None) -> Outcome:  # type: ignore[override]
        """Retract a fact (same id and content as asserted); a sid where an action ran is rebuilt first."""
        sid = validate_sid(fact.get("sid") if isinstance(fact, dict) else None)
        if (ruleset_name, sid) in self._dirty and not self._rebuild(ruleset_name, sid):
            return Outcome.NOT_HANDLED  # the sid held no facts: the core would make a state without its state fact
        return self._apply(_core.retract_fact, ruleset_name, fact, complete)

    def _rebuild(self, ruleset_name: str, sid: str) -> bool:
        """Give a sid a fresh core state holding the same facts, with no stale frames; False when
        it held none (the sid is then gone until its next assertion).

        Root cause of the crash on retraction (durable_rules 2.0.28, src/rules; docs/rete.md):
        when an action completes, ``deleteCurrentAction`` frees its action frame
        (``deleteDispatchingActionFrame``) but leaves (1) the frame's ``isDispatching`` flag set
        and (2) the location entries of the *facts* in it pointing at the freed frame. A later
        retraction of such a fact walks its locations: ``deleteActionFrame`` checks
        ``isDispatching`` before ``isActive``, answers ERR_NODE_DISPATCHING, and
        ``handleDeleteMessage`` calls ``deleteMessageFromFrame`` on the freed frame. That
        function zeroes the fact's slot but never decrements ``messageCount``; its loop
        ``for (i = 0, c = 0; c < messageCount; ++i)`` counts non-empty slots, so on the
        *second* retraction from the same frame it runs past the 16-slot ``messages`` array,
        reading (and where an offset happens to match, writing) the neighbouring pool memory:
        a SIGSEGV when that memory is unmapped, corrupt state otherwise. Every rule that joins
        two facts which are later retracted one by one (a count window used up, an order and
        its clock) reaches it; whether it crashes depends on heap layout.

        The workaround keeps ``deleteMessageFromFrame`` from ever meeting a freed frame twice:
        before the first retraction in a sid where an action ran, the sid's facts are read
        (``get_facts``), its state is deleted (``deleteStateNode`` frees the pools without
        walking frames) and the facts are asserted again with actions muted. Rules whose
        facts still match fire again, muted, which leaves the sid marked: the next retraction
        rebuilds again, so a freed frame meets at most one retraction. Matching depends only
        on the facts held, so what the rules answer afterwards is unchanged; the message ids
        (and their renames) are the core's own, kept as they are.

        Deleting a state has a trap of its own: ``deleteStateNode`` takes the state out of the
        state pool and the sid index but not out of ``reverseStateIndex``, the list of states
        that ``start_action`` walks (``getNextResult``, state.c), while the walk's length
        (``statePool.count``) shrinks. Until a new state reuses the freed slot, that walk reads
        the freed state: a SIGSEGV, e.g. when the sid held no facts, so nothing re-created it,
        and the rebuild then drained the ruleset (tests/test_rete_crash.py). So nothing here
        calls ``start_action`` (see ``_SafeRuleset.run_pending``) and the rebuild drains
        nothing: ``do_actions`` runs every (muted) action a re-assertion starts in its state,
        and a muted action makes no nested call that could leave one pending elsewhere.
        """
        ruleset: _SafeRuleset = self.get_ruleset(ruleset_name)
        facts = ruleset.get_facts(sid)
        ruleset.delete_state(sid)  # an action ran in it (it is dirty): safe to delete, see delete_state
        self._dirty.discard((ruleset_name, sid))
        self._acted.discard((ruleset_name, sid))
        errors: list[Any] = []
        self._muted = True
        try:
            for fact in facts:
                code, handle = ruleset.call(_core.assert_fact, dumps(fact, ruleset.numeric_fields))
                if code in (0, 3) and handle:
                    ruleset.do_actions(handle, lambda e, _s: errors.append(e) if e else None)
        finally:
            self._muted = False
        self.rebuilds += 1
        if not facts:
            return False
        self._check(ruleset_name, sid, errors)
        return True

    def post_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("post_batch runs actions later on a background thread; post one at a time")

    assert_facts = retract_facts = post_batch

    def delete_state(self, ruleset_name: str, sid: str | None = None) -> None:
        """Evict a sid (frees one of the 1,024 slots) and forget its message ids.

        The core does not initialise a new state's action context (``createStateNode`` leaves
        ``context.messages`` and ``context.stateFact`` as the pool's memory was) and
        ``deleteStateNode`` frees both: evicting a state in which no action ever ran freed
        garbage pointers (``double free or corruption``, ``free(): invalid pointer`` or a
        SIGSEGV; docs/rete.md). An action that completes sets both to NULL
        (``freeActionContext``). So a state that has run no action first runs the host's own
        rule (``rectify_init_context``, registered with every ruleset, matching only an event
        that carries that key, whose action does nothing), then is deleted.
        """
        validate_sid(sid)
        ruleset = self.get_ruleset(ruleset_name)
        key = (ruleset_name, str(sid))
        if key not in self._acted:
            errors: list[Any] = []
            code, handle = ruleset.call(_core.assert_event, dumps({"sid": sid, "id": _INIT_RULE, _INIT_RULE: 1}))
            if code == 0 and handle:
                ruleset.do_actions(handle, lambda e, _s: errors.append(e) if e else None)
            self._check(ruleset_name, str(sid), errors)
        ruleset.delete_state(sid)
        self._acted.discard(key)
        self._dirty.discard(key)
        self._ids.pop(key, None)

    def get_state(self, ruleset_name: str, sid: str | None = None) -> dict[str, Any]:
        return self.get_ruleset(ruleset_name).get_state(validate_sid(sid))

    def get_facts(self, ruleset_name: str, sid: str | None = None) -> list[dict[str, Any]]:
        return self.get_ruleset(ruleset_name).get_facts(validate_sid(sid))

    def _key(self, ruleset: str, sid: str, message: dict[str, Any]) -> dict[str, Any]:
        mid = message.get("id")
        if not isinstance(mid, str) or not mid:
            raise ValueError(f"message to {ruleset!r}/{sid!r} needs a non-empty string 'id' (unique ids)")
        ids = self._ids.setdefault((ruleset, sid), _Ids())
        given = ids.given.get(mid)
        if given is None:
            given, n = mid, 0
            while ids.hashes.get(fnv1a_32(given), given) != given:
                n += 1
                given = f"{mid}~{n}"
            ids.given[mid] = given
            ids.hashes[fnv1a_32(given)] = given
        if given == mid:
            return message
        return {**message, "id": given, "id_orig": mid}

    def _apply(self, call: Callable[[int, str], tuple[int, int]], ruleset_name: str, message: dict[str, Any], complete: None) -> Outcome:
        if complete is not None:
            raise NotImplementedError("SafeHost is synchronous; no completion callbacks")
        if not isinstance(message, dict):
            raise ValueError("post one message (a dict) at a time")
        ruleset: _SafeRuleset = self.get_ruleset(ruleset_name)
        sid = validate_sid(message.get("sid"))
        text = dumps(self._key(ruleset_name, sid, message), ruleset.numeric_fields)
        try:
            code, handle = ruleset.call(call, text)
        except _core.error as exc:
            raise ReteFault(ruleset_name, sid, None, f"durable_rules rejected {text}: {exc}") from None
        except MemoryError:  # the 1,025th live sid; the ruleset may now refuse every new sid
            raise ReteFault(ruleset_name, sid, None, "sid table full (1,024 live sids); ruleset may be broken") from None
        outcome = _CODES.get(code)
        if outcome is None:
            raise ReteFault(ruleset_name, sid, None, f"unexpected return code {code}")
        errors: list[Any] = []
        if code in (0, 3) and handle:
            ruleset.do_actions(handle, lambda e, _s: errors.append(e) if e else None)
        if self.drain_every_post or errors:
            self._drain(ruleset, errors)
        self._check(ruleset_name, sid, errors)
        return outcome

    def _drain(self, ruleset: _SafeRuleset, errors: list[Any]) -> None:
        """Run any action still pending in this ruleset (the work Host's timer thread did):
        those that nested calls from actions started in other states."""
        while ruleset.run_pending(errors):
            pass

    def _check(self, ruleset_name: str, sid: str, errors: list[Any]) -> None:
        faults, self._faults[:] = list(self._faults), []
        state = self.get_ruleset(ruleset_name).get_state(sid)
        if "exception" in state:  # swallowed by durable itself (not by our guard)
            detail = str(state.pop("exception"))
            self.get_ruleset(ruleset_name).update_state(state)
            faults.append(ReteFault(ruleset_name, sid, None, detail))
        faults += [ReteFault(ruleset_name, sid, None, repr(e)) for e in errors]
        if faults:
            first = faults[0]
            if len(faults) > 1:
                first.detail += f" (+{len(faults) - 1} more)"
                first.args = (str(first) + f" (+{len(faults) - 1} more)",)
            raise first


# --------------------------------------------------------------------------- sharded ruleset


class ShardedRuleset:
    """One correlation ruleset run as ``sidmap.copies`` copies over collision-free sids.

    This is the API for decision rules: give it the enterprise id with each message; it sets
    ``sid``, checks that the message carries the same enterprise in ``enterprise_field`` (rules
    must join on it, e.g. ``{"enterprise": {"first": "enterprise"}}``), and posts to the copy
    ``name.<index>`` that owns the enterprise's shard.
    """

    def __init__(
        self,
        host: SafeHost,
        name: str,
        definition: Mapping[str, Any],
        sidmap: SidMap | None = None,
        enterprise_field: str = "enterprise",
        numeric_fields: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.name = name
        self.sidmap = sidmap or SidMap()
        self.enterprise_field = enterprise_field
        self.names = [f"{name}.{i}" for i in range(self.sidmap.copies)]
        for ruleset_name in self.names:
            host.register(ruleset_name, definition, numeric_fields)

    def _route(self, enterprise: str, message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if message.get(self.enterprise_field) != enterprise:
            raise ValueError(f"message must carry {self.enterprise_field}={enterprise!r}: several enterprises share one sid")
        ref = self.sidmap.assign(enterprise)
        return self.names[ref.index], {**message, "sid": ref.sid}

    def post(self, enterprise: str, message: dict[str, Any]) -> Outcome:
        return self.host.post(*self._route(enterprise, message))

    def assert_fact(self, enterprise: str, fact: dict[str, Any]) -> Outcome:
        return self.host.assert_fact(*self._route(enterprise, fact))

    def retract_fact(self, enterprise: str, fact: dict[str, Any]) -> Outcome:
        return self.host.retract_fact(*self._route(enterprise, fact))

    def facts(self, enterprise: str) -> list[dict[str, Any]]:
        """The facts of this enterprise (its shard's facts filtered on the enterprise field)."""
        ref = self.sidmap.ref(enterprise)
        try:
            facts = self.host.get_facts(self.names[ref.index], ref.sid)
        except _core.error as exc:
            if "309" in str(exc):  # sid never created (or evicted): no facts
                return []
            raise
        return [f for f in facts if f.get(self.enterprise_field) == enterprise]

    def release(self, enterprise: str) -> bool:
        """Forget an enterprise (retract its facts first); evicts its sid when it was the last."""
        ref = self.sidmap.release(enterprise)
        if ref is None:
            return False
        self.host.delete_state(self.names[ref.index], ref.sid)
        return True
