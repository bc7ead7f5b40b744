"""Property tests over generated workload files and command lines (hypothesis).

Every generated workload file either loads or is one line of at most 300 characters (never a
traceback, never a hang); every file that loads runs to its end under a small wall bound with
status ok (or a clean invalid / timeout).  Every generated ``bench`` command line either
starts a matrix or is one line and exit status 2.  The examples are derived from a fixed seed
(``derandomize``): the same ones in every run, so a failure reproduces."""
from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness import bench as BN
from harness import registry
from harness import workload as W
from harness.__main__ import main

BASE = tomllib.loads((registry.WORKLOAD_DIR / "tiny.toml").read_text())
for key in ("provenance", "question", "thread", "description"):
    BASE.pop(key)
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BARE = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------------- TOML out
def _key(k) -> str:
    return k if BARE.match(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(d: dict) -> str:
    """A dict as TOML: one line per top-level key, everything below as inline tables."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in d.items())


# ---------------------------------------------------------------------------- mutations
def _paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


PATHS = [p for p in _paths(BASE) if p]
hostile = st.one_of(
    st.integers(-2**70, 2**70), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e4),
    st.sampled_from([0, -1, 1e-9, 1e9, 2**31, 2**40, 10**12, math.inf, math.nan]),
    st.text(max_size=12), st.booleans(),
    st.lists(st.integers(0, 9), max_size=3), st.just([[[[[1]]]]]),
    st.dictionaries(st.sampled_from(["dist", "lo", "hi", "mean", "median", "sigma", "x"]),
                    st.one_of(st.sampled_from(["uniform", "lognormal", "normal"]),
                              st.floats(-1, 1e3)), max_size=3),
)
numeric = st.one_of(st.integers(0, 200), st.floats(0, 200),
                    st.sampled_from([0, 0.5, 1, 1e-3, 0.1, 32, 1000, 4096, 65536, 86400]))


def _get(d, path):
    for p in path:
        d = d[p]
    return d


def _set(d, path, value):
    node = d
    for p in path[:-1]:
        node = node[p]
    if value is _DELETE:
        if isinstance(node, dict):
            del node[path[-1]]
        else:
            node.pop(path[-1])
    else:
        node[path[-1]] = copy.deepcopy(value)     # (a drawn value is never shared)


_DELETE = object()


@st.composite
def mutated(draw, values=hostile, n=3):
    d = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, n))):
        paths = [p for p in _paths(d) if p]
        if values is not hostile:             # a number for a number: mostly accepted files
            paths = [p for p in paths if isinstance(_get(d, p), (int, float))
                     and not isinstance(_get(d, p), bool)]
        path = draw(st.sampled_from(paths))
        value = draw(st.one_of(values, st.just(_DELETE)) if values is hostile else values)
        try:
            _set(d, path, value)
        except (KeyError, IndexError, TypeError):
            pass
    return d


@st.composite
def mutated_bytes(draw):
    text = to_toml(draw(mutated())).encode()
    at = draw(st.integers(0, len(text)))
    junk = draw(st.binary(max_size=8) | st.sampled_from([b"\xff", b"[" * 200, b"\n[[", b"\x00"]))
    return text[:at] + junk + text[at + draw(st.integers(0, 4)):]


def loads_or_one_line(path: Path):
    """The property: a list of workloads, or one line of at most 300 characters."""
    try:
        ws = W.load_all(path)
        event("loads")
        return ws
    except W.WorkloadError as e:
        event("one line")
        msg = str(e)
        assert "\n" not in msg and len(msg) <= 300, msg
        assert msg.startswith(str(path)), msg
        return None


# ---------------------------------------------------------------------------- properties
@settings(max_examples=2000, **SETTINGS)
@given(st.one_of(mutated().map(lambda d: to_toml(d).encode()), mutated_bytes()))
def test_every_generated_file_loads_or_is_one_short_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("w") / "gen.toml"
    path.write_bytes(data)
    loads_or_one_line(path)


@settings(max_examples=500, **SETTINGS)
@given(mutated(values=numeric, n=4),
       st.sampled_from(["aa", "mainline", "rmap", "linux26", "oom_reaper", "psi_userspace"]))
def test_every_accepted_file_runs_to_its_end_under_a_wall_bound(tmp_path_factory, d, policy):
    path = tmp_path_factory.mktemp("w") / "gen.toml"
    path.write_text(to_toml(d))
    ws = loads_or_one_line(path)
    for w in ws or ():
        cell = BN.Cell(policy, w.name, str(path), 0, str(registry.POLICY_DIR), "k")
        rec = BN.run_cell(cell, None, 1.0)
        assert rec["status"] in ("ok", "invalid", "timeout"), rec["error"]
        event(f"run {rec['status']}")


ARGS = st.lists(st.tuples(
    st.sampled_from(["--timeout", "--seeds", "--seed-list", "--jobs", "--memory-mb",
                     "--policies", "--workloads", "--backend", "--policy-dir"]),
    st.one_of(st.sampled_from(["", "-5", "nan", "inf", "0", "1", "2-x", "-3", "3-1", "0,2-4",
                               "aa", "tiny", ",", "loky", "dask", "1e9", "99999999999"]),
              st.text(alphabet="0123456789-,.aex ", max_size=8))), max_size=4)


@settings(max_examples=500, **SETTINGS)
@given(ARGS)
def test_every_generated_bench_command_line_starts_or_is_one_line(monkeypatch, capsys,
                                                                   tmp_path_factory, args):
    out = tmp_path_factory.mktemp("out")
    seen = {}

    def fake_bench(**kw):
        seen.update(kw)
        (out / "runs.csv").write_text("status\nok\n")
        return BN.BenchResult(0, out, pd.DataFrame({"status": ["ok"]}), {}, {}, None, out)

    monkeypatch.setattr(BN, "bench", fake_bench)
    argv = ["bench", "--quiet", "--no-report", "--out", str(out)] + [x for pair in args for x in pair]
    try:
        rc = main(argv)
    except SystemExit as e:                   # argparse: a usage error
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    if rc == 0:
        assert seen and err == ["1 runs: ok 1"], err
        assert all(s >= 0 for s in seen["seeds"]) and len(list(seen["seeds"])) >= 1
        assert math.isfinite(seen["timeout_s"]) and seen["timeout_s"] > 0
        assert seen["policies"] is None or seen["policies"]
    else:
        assert rc == 2 and len(err) == 1 and len(err[0]) <= 300, err
        assert "Traceback" not in err[0]


def test_the_mutation_corpus_gives_one_line_each(tmp_path):
    """The fixed corpus (``tests/corpus/*.toml``): each file a mutation that once crashed or
    hung ``check`` or ``run``, each now one line naming its key."""
    files = sorted((Path(__file__).parent / "corpus").glob("*.toml"))
    assert len(files) >= 10
    for f in files:
        expect = f.read_text(errors="replace").splitlines()[0].removeprefix("# expect: ").strip()
        with pytest.raises(W.WorkloadError) as e:
            W.load_all(f)
        assert expect in str(e.value) and len(str(e.value)) <= 300, (f, str(e.value))
