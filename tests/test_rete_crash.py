"""The rete backend must never crash the process: durable_rules' ``delete_state`` leaves the
deleted state in the list of states that ``start_action`` walks (``reverseStateIndex``), so a
``start_action`` before the slot is reused reads freed memory (SIGSEGV). ``SafeHost`` no longer
calls ``start_action`` (engine/decide/rete.py, ``_SafeRuleset.run_pending``, ``SafeHost._rebuild``).

A segfault would kill pytest, so every scenario runs in a child process: exit code 0 is the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Two holders whose sids share one ruleset copy of the rete backend (decisions.2: s0136, then
# s0154): the crash needs the first-created sid to be deleted while the other one lives.
HOLDER = "913302814BXKFLJ2K9"
OTHER_HOLDER = "91330226NK6EJTWTLD"


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code), *args],
                          check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def event(type: str, time: str, data: dict, subject: str, id: str) -> dict:
    return {"specversion": "1.0", "id": id, "source": "test", "type": type, "subject": subject, "time": time, "data": data}


def lease_review_passed_then_energy_shortfall(expires_on: str = "2024-12-31") -> list[dict]:
    """Found by fuzzing (2026-12-02): a standard-land parcel registered after its lease
    review date (the review order is due at once), another holder's parcel, then an inspection
    of the first parcel that misses its energy commitment (a finding, then a shortfall order)."""
    return [
        event("land.parcel.registered", "2024-03-03T10:00:00+08:00", {
            "parcel": "330281-2020-000000", "area_mu": 10.0, "use": "industrial", "started_on": "2020-09-17",
            "commitments": {"investment_yuan_per_mu": 3420000.0, "floor_area_ratio": 1.4, "tax_yuan_per_mu": 380000.0,
                            "energy_tce_per_10k_yuan": 0.4},
            "contract": {"signed_on": "2020-04-23", "start_by": "2020-10-20", "complete_by": "2022-04-13",
                         "expires_on": expires_on, "remedies": ["penalty", "no_renewal"]}}, HOLDER, "t-1"),
        event("land.parcel.registered", "2024-03-03T10:00:00+08:00", {
            "parcel": "330226-2008-000570", "area_mu": 45.2, "use": "industrial", "started_on": "2008-09-21",
            "contract": {"signed_on": "2008-03-30", "start_by": "2008-09-26", "complete_by": "2010-09-16",
                         "expires_on": "2058-03-29"}}, OTHER_HOLDER, "t-2"),
        event("land.parcel.inspected", "2024-03-03T10:40:00+08:00", {
            "parcel": "330281-2020-000000", "stage": "in_production", "on": "2024-01-24",
            "figures": {"tax_yuan_per_mu": 512000.0, "energy_tce_per_10k_yuan": 0.517}}, HOLDER, "t-3"),
    ]


RECORDS = """
    import json, sys
    import orjson
    from engine import Engine
    events = json.loads(sys.argv[1])
    for backend in ("compiled", "rete"):
        engine = Engine(backend=backend)
        assert all(engine.validator.problem(e) is None for e in events)
        run = [orjson.dumps(r.to_dict()).decode() for r in engine.run(events)]
        batch = [orjson.dumps(r.to_dict()).decode()
                 for r in Engine(backend=backend).run_batch([orjson.dumps(e) for e in events], batch_size=8)]
        print(json.dumps({"backend": backend, "run": run, "batch": batch}), flush=True)
"""


def test_lease_review_passed_then_energy_shortfall_gives_the_compiled_records_on_rete():
    done = run_child(RECORDS, json.dumps(lease_review_passed_then_energy_shortfall()))
    assert done.returncode == 0, done.stderr[-3000:]  # was -11 (SIGSEGV) in SafeHost._rebuild -> _drain
    compiled, rete = (json.loads(line) for line in done.stdout.splitlines())
    rules = [json.loads(r).get("rule") for r in compiled["run"]]
    assert rules == ["land.lease.renew", "land.standard.energy", "land.standard.shortfall"]
    assert compiled["batch"] == compiled["run"]
    assert rete["run"] == compiled["run"] and rete["batch"] == compiled["run"]


def test_a_rebuild_that_finds_no_facts_does_not_crash():
    """The minimal form: an action ran in sid s1 (created before s2); retracting a fact the core
    never stored rebuilds s1, which then holds no facts and is not re-created."""
    done = run_child(
        """
        from engine.decide.rete import Outcome, SafeHost
        fired = []
        host = SafeHost()
        host.register("r", {"probe": {"all": [{"p": {"kind": "probe"}}], "run": lambda c: fired.append(c.p.id)}})
        host.assert_fact("r", {"sid": "s1", "id": "f1", "kind": "other"})      # not handled: not stored
        host.assert_fact("r", {"sid": "s2", "id": "g1", "kind": "probe"})
        host.assert_fact("r", {"sid": "s1", "id": "p1", "kind": "probe"})      # fires: s1 must rebuild
        assert host.retract_fact("r", {"sid": "s1", "id": "p1", "kind": "probe"}) is Outcome.HANDLED
        assert host.retract_fact("r", {"sid": "s1", "id": "f1", "kind": "other"}) is Outcome.NOT_HANDLED
        host.assert_fact("r", {"sid": "s2", "id": "g2", "kind": "probe"})      # a post drains the ruleset
        assert fired == ["g1", "p1", "g2"], fired
        print("OK")
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["OK"]


def test_posting_after_an_evicted_sid_does_not_crash():
    """``delete_state`` of the first-created sid, then a post to another sid (which drains).

    An action has run in the evicted sid (for one where none ran, see the next test).
    """
    done = run_child(
        """
        from engine.decide.rete import SafeHost
        fired = []
        host = SafeHost()
        host.register("r", {"hit": {"all": [{"m": {"k": "x"}}], "run": lambda c: fired.append(c.m.id)}})
        host.assert_fact("r", {"sid": "s1", "id": "a", "k": "x"})
        host.assert_fact("r", {"sid": "s2", "id": "b", "k": "y"})
        host.delete_state("r", "s1")
        host.assert_fact("r", {"sid": "s2", "id": "c", "k": "x"})
        assert fired == ["a", "c"], fired
        print("OK")
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["OK"]


def test_actions_a_nested_call_starts_in_another_sid_still_run():
    """Draining without ``start_action``: an action asserting a fact into another sid starts
    that sid's rule, which runs before the post returns (also after a sid was deleted)."""
    done = run_child(
        """
        from engine.decide.rete import SafeHost
        seen = []
        def forward(c):
            seen.append(("forward", c.s.sid))
            c.assert_fact({"sid": "s2", "id": "copy-" + c.m.id, "kind": "copy"})
        host = SafeHost()
        host.register("r", {"forward": {"all": [{"m": {"kind": "original"}}], "run": forward},
                            "copied": {"all": [{"m": {"kind": "copy"}}], "run": lambda c: seen.append(("copied", c.s.sid))}})
        host.assert_fact("r", {"sid": "s0", "id": "z", "kind": "copy"})
        host.assert_fact("r", {"sid": "s9", "id": "y", "kind": "none"})
        host.delete_state("r", "s0")
        host.assert_fact("r", {"sid": "s1", "id": "a", "kind": "original"})
        assert seen == [("copied", "s0"), ("forward", "s1"), ("copied", "s2")], seen
        print("OK")
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["OK"]


def test_evicting_a_sid_where_no_action_ran_does_not_crash():
    """The core leaves a new state's action context uninitialised and ``delete_state`` frees it:
    evicting a sid where no action ever ran aborted (``double free or corruption``) or crashed
    (SIGSEGV), whether evicted by the host or released by a sharded ruleset. The host runs its own
    no-op rule in such a state first; the rules' answers are unchanged."""
    done = run_child(
        """
        from engine.decide.rete import SafeHost, ShardedRuleset, SidMap
        fired = []
        host = SafeHost()
        host.register("r", {"hit": {"all": [{"m": {"k": "x"}}], "run": lambda c: fired.append(c.m.id)}})
        host.assert_fact("r", {"sid": "s1", "id": "a", "k": "y"})  # stored, no action
        host.assert_fact("r", {"sid": "s2", "id": "b", "k": "y"})
        host.retract_fact("r", {"sid": "s1", "id": "a", "k": "y"})
        host.delete_state("r", "s1")
        host.assert_fact("r", {"sid": "s2", "id": "c", "k": "x"})
        host.delete_state("r", "s2")  # an action ran there
        host.assert_fact("r", {"sid": "s1", "id": "d", "k": "x"})  # a sid evicted and used again
        assert fired == ["c", "d"], fired
        assert host.get_facts("r", "s1") == [{"sid": "s1", "id": "d", "k": "x"}]

        sharded = ShardedRuleset(SafeHost(), "ev", {"r": {"all": [{"m": {"k": "x"}}], "run": lambda c: fired.append(c.m.id)}},
                                 SidMap(shards=4, per_ruleset=4))
        for n in range(40):
            sharded.assert_fact(f"E{n}", {"id": str(n), "enterprise": f"E{n}", "k": "y"})
        for n in range(40):
            sharded.retract_fact(f"E{n}", {"id": str(n), "enterprise": f"E{n}", "k": "y"})
            sharded.release(f"E{n}")
        sharded.assert_fact("E1", {"id": "z", "enterprise": "E1", "k": "x"})
        assert fired[-1] == "z" and [f["id"] for f in sharded.facts("E1")] == ["z"]
        print("OK")
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["OK"]


def test_the_hosts_own_rule_name_is_refused_in_a_ruleset():
    from engine.decide.rete import SafeHost

    with pytest.raises(ValueError, match="rectify_init_context"):
        SafeHost().register("r", {"rectify_init_context": {"all": [{"m": {"k": "x"}}], "run": lambda c: None}})
