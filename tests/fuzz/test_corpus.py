"""The fuzz corpus as tests: every kept input still runs clean through its target; each target survives a short
atheris run; `pytest -m chaos` runs a million inputs; and every known finding has a strict xfail test that starts
passing (and so fails, until the xfail is removed) once the bug is fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from . import targets

REPO = targets.REPO
CHAOS_INPUTS = 1_000_000
SHORT_RUNS = 2_000


def corpus_files(target: str) -> list[Path]:
    return sorted(p for p in (targets.CORPUS / target).iterdir() if p.is_file())


# -- the kept corpus ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_every_kept_input_runs_through_its_target_without_a_new_failure(target):
    files = corpus_files(target)
    assert any(p.name.startswith("seed-") for p in files), f"corpus/{target} lost its seeds (run.py --reseed)"
    failures = []
    for path in files:
        if path.name.startswith("finding-"):
            continue  # replayed strictly by test_known_finding_still_reproduces
        try:
            targets.run_one(target, path.read_bytes(), known=True)
        except Exception as e:  # noqa: BLE001 - collect them all, report each with its file
            failures.append(f"{path.name}: {type(e).__name__}: {str(e)[:300]}")
    assert not failures, f"{len(failures)} of {len(files)} inputs in corpus/{target} fail:\n" + "\n".join(failures)


def test_the_corpus_stays_small():
    sizes = {t: sum(p.stat().st_size for p in corpus_files(t)) for t in targets.TARGETS}
    assert sum(sizes.values()) < 2_000_000, sizes


def test_the_inputs_of_fixed_findings_are_kept_as_regressions():
    kept = {p.name for t in targets.TARGETS for p in corpus_files(t) if p.name.startswith("regression-")}
    assert len(kept) >= 16, sorted(kept)


def test_a_broken_invariant_is_reported_and_only_a_matching_finding_excuses_it(monkeypatch):
    # The harness itself: a target that breaks an invariant raises, and only a finding with the same target,
    # exception and place excuses it.
    with pytest.raises(targets.Broken):
        targets.check_topic("citynode/soil/+/reading")
    with pytest.raises(targets.Broken):
        targets.check_topic("citynode//reading")
    finding = targets.Finding("x", "pipeline", "Broken", "unsafe_topic", "soil", "finding-x", "test")
    monkeypatch.setattr(targets, "FINDINGS", (finding,))
    assert targets.match_finding("pipeline", targets.Broken("unsafe_topic", "citynode/soil/+")) is finding
    assert targets.match_finding("pipeline", targets.Broken("unsafe_topic", "citynode/fill/+")) is None
    assert targets.match_finding("chirpstack", targets.Broken("unsafe_topic", "citynode/soil/+")) is None
    assert targets.match_finding("pipeline", ValueError("unsafe_topic soil")) is None


# -- known findings: strict xfail until fixed --------------------------------------------------------------------


class FindingReproduced(Exception):
    pass


if targets.FINDINGS:

    @pytest.mark.parametrize("finding", [pytest.param(f, id=f.id, marks=pytest.mark.xfail(
        strict=True, raises=FindingReproduced, reason=f.summary)) for f in targets.FINDINGS])
    def test_known_finding_still_reproduces(finding):
        """Passes once the bug is fixed: then remove the finding from targets.FINDINGS (this xfail goes with it) and
        rename its input from finding-* to regression-*, so the corpus keeps replaying it. Defined only while findings
        are open (an empty parameter set would show as a skip)."""
        data = (targets.CORPUS / finding.target / finding.corpus).read_bytes()
        try:
            targets.run_one(finding.target, data, known=False)
        except Exception as e:
            if targets.match_finding(finding.target, e) is finding:
                raise FindingReproduced(f"{type(e).__name__}: {e}") from e
            raise  # a different failure on this input is a real failure, not the expected one


# -- atheris ---------------------------------------------------------------------------------------------------


def _fuzz(args: list[str], summary: Path, timeout: float) -> dict:
    pytest.importorskip("atheris")
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--no-merge", "--summary", str(summary), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert summary.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(summary.read_text(encoding="utf-8"))
    assert result["crashes"] == 0 and proc.returncode == 0, proc.stdout[-6000:]
    return result


def test_every_target_survives_a_short_atheris_run(tmp_path):
    result = _fuzz(["--target", "all", "--runs", str(SHORT_RUNS), "--artifacts", str(tmp_path / "artifacts")],
                   tmp_path / "summary.json", timeout=280)
    assert set(result["targets"]) == set(targets.TARGETS)
    for name, r in result["targets"].items():
        assert r["runs"] >= SHORT_RUNS and not r["crashes"], (name, r)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_a_million_fuzz_inputs_over_all_targets_find_nothing_new(request, tmp_path):
    """At least 1,000,000 inputs, each target's share proportional to its speed. The numbers go to the JSON file
    named by CITYNODE_FUZZ_SUMMARY (default: a temporary file)."""
    if "chaos" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a long run: select it with pytest -m chaos")
    summary = Path(os.environ.get("CITYNODE_FUZZ_SUMMARY") or tempfile.mkstemp(prefix="citynode-fuzz-",
                                                                                suffix=".json")[1])
    result = _fuzz(["--chaos", str(CHAOS_INPUTS), "--artifacts", str(tmp_path / "artifacts")], summary, timeout=3500)
    print(f"fuzz summary: {summary}")
    assert result["total_runs"] >= CHAOS_INPUTS, result["total_runs"]
    for name, r in result["targets"].items():
        assert r["runs"] >= result["budget"][name] and not r["crashes"], (name, r)
