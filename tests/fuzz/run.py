"""Run the citynode fuzz targets under atheris/libFuzzer, one subprocess per target.

    python -m tests.fuzz.run [--target NAME|all] [--runs N] [--max-time S] [--summary PATH]
    python -m tests.fuzz.run --chaos 1000000 [--summary PATH]      inputs split over the targets by speed
    python -m tests.fuzz.run --target codec --replay FILE...         run inputs without atheris (triage)
    python -m tests.fuzz.run --target codec --minimize CRASHFILE     libFuzzer's -minimize_crash
    python -m tests.fuzz.run --reseed                                rewrite the seed-* corpus files

Each target fuzzes from tests/fuzz/corpus/<target>/ (seeds, kept finds, finding-* inputs); new inputs go to a
temporary directory and, unless --no-merge, the ones that add coverage are merged into the corpus at the end
(libFuzzer -merge=1), bounded in count and size. atheris.Fuzz() never returns, so the worker is a
subprocess ("--worker"); its libFuzzer statistics (-print_final_stats=1) give runs and execs/s. Known findings
(targets.FINDINGS) do not stop the fuzzer unless --strict; anything else does, and its input is kept in the
artifacts directory. Exit status: 0 when no target crashed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = HERE / "corpus"
NAMES = ("codec", "chirpstack", "tts", "serial", "command", "config", "registry", "pipeline")
# What each target's corpus may grow to (seed-*, finding-* and regression-* files are never removed).
MAX_FILES = 250
MAX_BYTES = 200_000
INSTRUMENT = ("citynode", "citynode_codec", "tomllib")


# libFuzzer dictionaries: the words each input format is made of, plus text that has broken parsers before
# (Unicode digits that str.isdigit() accepts and int() refuses, escapes, BOMs, huge and special numbers).
_TRICKY = (b"\xc2\xb2", b"\xd9\xa3", b"\xef\xbc\x91", b"\xe2\x80\xae", b"\xed\xa0\x80", b"\xf0\x9f\x92\xa9",
           b"\xef\xbb\xbf", b"\x00", b"\r\n", b"\xc2\xa0", b"9" * 24, b"1e400", b"-0", b"nan", b"inf")
_JSON = (b'"', b"\\n", b"\\u0000", b"\\ud800", b"null", b"true", b"false", b"NaN", b"Infinity", b'": ', b"[{",
         b"ac1f09fffe000001", b"AC1F09FFFE000003", b"70b3d57ed0000abc", b"EAdUG0A=", b"IFIJGM8=", b"==",
         b"2026-05-04T11:00:00Z", b"+02:00")
_CHIRPSTACK = (b"deduplicationId", b"time", b"deviceInfo", b"devEui", b"deviceName", b"fPort", b"fCnt", b"data",
               b"rxInfo", b"gatewayId", b"rssi", b"snr", b"txInfo", b"frequency", b"modulation", b"lora",
               b"spreadingFactor", b"confirmed", b"joinServerContext", b"application/", b"/device/", b"/event/up",
               b"/event/join")
_TTS = (b"end_device_ids", b"device_id", b"dev_eui", b"uplink_message", b"received_at", b"f_port", b"f_cnt",
        b"frm_payload", b"rx_metadata", b"gateway_ids", b"gateway_id", b"channel_rssi", b"settings", b"data_rate",
        b"spreading_factor", b"correlation_ids", b"as:up:", b"v3/", b"@ttn", b"/devices/", b"/up")
_COMMAND = (b"command", b"request_id", b"confirmed", b"sample_interval_s", b"batch_size", b"fill_alarm_pct",
            b"soil_dry_pct", b"battery_low_v", b"empty_distance_m", b"full_distance_m", b"soil_dry_mv", b"soil_wet_mv",
            b"soil_wet_vwc_pct", b"seq", b"set_interval", b"set_thresholds", b"set_batch_size", b"set_geometry",
            b"set_calibration", b"request_status", b"reboot", b"tree-0001", b"glass-0002")
_TOML = (b"[bridge]", b"[input.chirpstack]", b"[input.tts]", b"[input.serial]", b"[output]", b"[outbox]",
         b"[registry]", b"[dedup]", b"[pipeline]", b"[metrics]", b"[log]", b"[pipeline.sensorthings]",
         b"[pipeline.sensorthings.datastreams.tree-0001]", b" = ", b'{env = "', b'{file = "', b'"@SANDBOX@/secret.txt"',
         b'"@SANDBOX@/registry.toml"', b'"""', b"'''", b"1979-05-27T07:32:00Z", b"0x", b"1_000", b"[[", b"]]",
         b"instance", b"shared_group", b"queue_size", b"tick_interval_s", b"host", b"port", b"tls", b"ca_file",
         b"username", b"password", b"anonymous", b"client_id", b"base_topic", b"qos", b"protocol", b"api_key",
         b"application_id", b"tenant_id", b"device_ids", b"baud", b"state_path", b"rx_mode", b"path", b"redis_url",
         b"window_s", b"unknown_devices", b"fiware", b"fiware_topic", b"sensorthings", b"version", b"id_template",
         b"datastreams", b"level", b"format", b"reconnect_min_s", b"max_db_mb", b"{device_id}", b"\\u0000",
         b"\\U0010ffff", b"\\n")
_REGISTRY = (b"[[device]]", b"[device.thresholds]", b"[device.datastreams]", b"dev_eui", b"name", b"kind",
             b"asset_id", b"lat", b"lon", b"empty_distance_m", b"full_distance_m", b"expected_interval_s", b"labels",
             b"p2p_key", b"source", b"thresholds", b"datastreams", b"fill_collection_pct", b"soil_irrigation_pct",
             b"battery_low_v", b"notes", b"soil", b"fill", b"chirpstack", b"serial", b"vwc_pct", b"fill_pct",
             b"AC1F09FFFE000001", b"AC-1F-09", b"000102030405060708090a0b0c0d0e0f", b";", b"\t", b"=", b",", b" = ",
             b"\\u0000", b"\\n", b'"')
_SERIAL = (b"+EVT:RXP2P:", b"+EVT:", b"OK", b"AT_ERROR", b"C1AC1F09FFFE000003", b"C2", b":-", b".25", b"TXP2P DONE")
DICTIONARIES = {
    "codec": _TRICKY[:9],
    "chirpstack": _TRICKY + _JSON + _CHIRPSTACK,
    "tts": _TRICKY + _JSON + _TTS,
    "serial": _TRICKY + _SERIAL,
    "command": _TRICKY + _JSON + _COMMAND,
    "config": _TRICKY + _TOML,
    "registry": _TRICKY + _REGISTRY,
    "pipeline": _TRICKY + _JSON + _CHIRPSTACK + _TTS,
}


def write_dictionary(target: str, path: Path) -> Path:
    """libFuzzer's dictionary format: one quoted token a line, bytes outside printable ASCII as \\xNN."""

    def quote(token: bytes) -> str:
        return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in token)

    path.write_text("".join(f'"{quote(t)}"\n' for t in DICTIONARIES[target]), encoding="ascii")
    return path


# -- the worker: one target inside atheris ------------------------------------------------------------------------


def worker(target: str, strict: bool, libfuzzer_args: list[str]) -> None:
    import logging

    import atheris

    logging.disable(logging.CRITICAL)  # the pipeline logs the errors it contains; the fuzzer reports its own
    with atheris.instrument_imports(include=list(INSTRUMENT)):  # the code under test, not this harness
        from tests.fuzz import targets
    seen: set[str] = set()
    clock = {"count": 0, "first": 0.0, "next": 1024}

    def test_one_input(data: bytes) -> None:
        count = clock["count"] = clock["count"] + 1
        if count == 1:
            clock["first"] = time.perf_counter()
        elif count == clock["next"]:  # execs/s without the start-up (imports, instrumentation, corpus loading)
            clock["next"] = count * 2 if count < 65536 else count + 65536
            print(f"EXECS {count} {time.perf_counter() - clock['first']:.6f}", file=sys.stderr, flush=True)
        found = targets.run_one(target, data, known=not strict)
        if found is not None and found.id not in seen:
            seen.add(found.id)
            print(f"KNOWN-FINDING {found.id}", file=sys.stderr, flush=True)

    # libFuzzer runs argv[0] through the shell for -merge=1 (and -fork): make it a command that starts this worker.
    argv0 = " ".join([sys.executable, "-m", "tests.fuzz.run", "--worker", target, *(["--strict"] if strict else []),
                      "--"])
    atheris.Setup([argv0, *libfuzzer_args], test_one_input)
    atheris.Fuzz()


# -- the parent: one subprocess per target ------------------------------------------------------------------------


_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_KNOWN = re.compile(r"^KNOWN-FINDING (\S+)", re.M)
_EXECS = re.compile(r"^EXECS (\d+) ([\d.]+)", re.M)
_EXCEPTION = re.compile(r"=== Uncaught Python exception: ===\n(.*?)(?:\n==\d+==|\nMS:|\Z)", re.S)


def _worker_cmd(target: str, strict: bool, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "tests.fuzz.run", "--worker", target, *(["--strict"] if strict else []), "--",
            *args]


def corpus_stats(path: Path) -> tuple[int, int]:
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def _bound_corpus(path: Path) -> int:
    """Drop the largest fuzzer-found files until the corpus is within bounds (never seed-*, finding-* or
    regression-* files)."""
    kept = ("seed-", "finding-", "regression-")
    found = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(kept)),
                   key=lambda p: p.stat().st_size)
    dropped = 0
    while found:
        count, size = corpus_stats(path)
        if count <= MAX_FILES and size <= MAX_BYTES:
            break
        found.pop().unlink()
        dropped += 1
    return dropped


def fuzz_target(target: str, *, runs: int | None, max_time: float | None, merge: bool, strict: bool,
                artifacts: Path, seed: int | None, timeout: float | None = None) -> dict:
    """Fuzz one target in a subprocess; returns its numbers."""
    from tests.fuzz.targets import MAX_LEN

    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    target_artifacts = artifacts / target
    target_artifacts.mkdir(parents=True, exist_ok=True)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=f"citynode-fuzz-{target}-", dir=shm) as tmp:
        env = dict(os.environ, CITYNODE_FUZZ_TMP=tmp)  # the targets' sandbox goes in here, and goes with it
        new = Path(tmp, "new")
        new.mkdir()
        args = [f"-max_len={MAX_LEN[target]}", "-print_final_stats=1", "-timeout=20", "-rss_limit_mb=3072",
                f"-artifact_prefix={target_artifacts}/", f"-dict={write_dictionary(target, Path(tmp, 'dict'))}"]
        if runs is not None:
            args.append(f"-runs={runs}")
        if max_time is not None:
            args.append(f"-max_total_time={max(1, math.ceil(max_time))}")
        if seed is not None:
            args.append(f"-seed={seed}")
        started = time.monotonic()
        proc = subprocess.run(_worker_cmd(target, strict, [*args, str(new), str(corpus)]), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                              timeout=timeout)
        seconds = time.monotonic() - started
        log = proc.stdout
        stats = {k: int(v) for k, v in _STAT.findall(log)}
        crashes = []
        if proc.returncode != 0:
            exc = _EXCEPTION.search(log)
            crashes.append({"artifact": (_ARTIFACT.findall(log) or [None])[-1], "returncode": proc.returncode,
                            "exception": exc.group(1).strip()[-3000:] if exc else log[-3000:]})
        new_files = sum(1 for _ in new.iterdir())
        merged = dropped = 0
        if merge and new_files and not crashes:
            before = corpus_stats(corpus)[0]
            subprocess.run(_worker_cmd(target, strict, [f"-max_len={MAX_LEN[target]}", "-merge=1", str(corpus),
                                                        str(new)]),
                           cwd=REPO, env=env, capture_output=True, text=True, errors="replace", timeout=timeout)
            dropped = _bound_corpus(corpus)
            merged = corpus_stats(corpus)[0] - before + dropped
    files, size = corpus_stats(corpus)
    timing = _EXECS.findall(log)
    count, elapsed = (int(timing[-1][0]), float(timing[-1][1])) if timing else (0, seconds)
    # A crashed run prints no final statistics: its last progress line is the best count there is.
    executed = stats.get("number_of_executed_units") or count
    if not timing:
        count = executed
    return {
        "target": target,
        "runs": executed,
        "execs_per_s": round(count / elapsed) if elapsed > 0 else 0,
        "seconds": round(seconds, 2),
        "corpus_files": files,
        "corpus_bytes": size,
        "new_units": new_files,
        "merged": merged,
        "dropped": dropped,
        "known_findings": sorted(set(_KNOWN.findall(log))),
        "crashes": crashes,
        "returncode": proc.returncode,
    }


def run_all(names: list[str], *, runs: dict[str, int | None], max_time: float | None, merge: bool, strict: bool,
            artifacts: Path, seed: int | None, jobs: int, timeout: float | None = None) -> dict:
    started = time.monotonic()

    def one(name: str) -> dict:
        return fuzz_target(name, runs=runs.get(name), max_time=max_time, merge=merge, strict=strict,
                           artifacts=artifacts, seed=seed, timeout=timeout)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, names))
    return {
        "targets": {r["target"]: r for r in results},
        "total_runs": sum(r["runs"] for r in results),
        "crashes": sum(len(r["crashes"]) for r in results),
        "known_findings": sorted({f for r in results for f in r["known_findings"]}),
        "seconds": round(time.monotonic() - started, 2),
        "artifacts": str(artifacts),
        "strict": strict,
    }


def chaos(total: int, *, artifacts: Path, strict: bool, seed: int | None, jobs: int, merge: bool = False,
          calibration_runs: int = 3000) -> dict:
    """At least `total` inputs over all targets, each target's share proportional to its speed (equal time)."""
    calibration = run_all(list(NAMES), runs={n: calibration_runs for n in NAMES}, max_time=None, merge=False,
                          strict=strict, artifacts=artifacts, seed=seed, jobs=jobs)
    speeds = {n: max(1, r["execs_per_s"]) for n, r in calibration["targets"].items()}
    budget = {n: math.ceil(total * speeds[n] / sum(speeds.values())) for n in NAMES}
    summary = run_all(list(NAMES), runs=budget, max_time=None, merge=merge, strict=strict, artifacts=artifacts,
                      seed=seed, jobs=jobs)
    summary["requested_total"] = total
    summary["budget"] = budget
    summary["calibration"] = {n: {"runs": r["runs"], "execs_per_s": r["execs_per_s"], "crashes": len(r["crashes"])}
                              for n, r in calibration["targets"].items()}
    summary["crashes"] += calibration["crashes"]
    return summary


def print_table(summary: dict, out=sys.stdout) -> None:
    print(f"{'target':<11} {'runs':>10} {'execs/s':>9} {'corpus':>7} {'bytes':>8} {'new':>6} {'crashes':>8}  known",
          file=out)
    for r in summary["targets"].values():
        print(f"{r['target']:<11} {r['runs']:>10} {r['execs_per_s']:>9} {r['corpus_files']:>7} {r['corpus_bytes']:>8} "
              f"{r['new_units']:>6} {len(r['crashes']):>8}  {','.join(r['known_findings']) or '-'}", file=out)
        for c in r["crashes"]:
            print(f"  CRASH {r['target']}: artifact {c['artifact']}\n    " +
                  c["exception"].replace("\n", "\n    ")[-1500:], file=out)
    print(f"total {summary['total_runs']} inputs in {summary['seconds']} s, {summary['crashes']} crashes", file=out)


# -- triage helpers -----------------------------------------------------------------------------------------------


def replay(target: str, files: list[str], strict: bool) -> int:
    import traceback

    from tests.fuzz import targets

    failed = 0
    for name in files:
        data = Path(name).read_bytes()
        try:
            found = targets.run_one(target, data, known=not strict)
        except Exception:  # noqa: BLE001 - triage: show every failure, keep going
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}")
            continue
        print(f"{'KNOWN ' + found.id if found else 'ok'} {name}")
    return 1 if failed else 0


def minimize(target: str, crash: str, max_time: float, strict: bool) -> int:
    out = Path(crash).with_name(Path(crash).name + ".min")
    args = ["-minimize_crash=1", f"-max_total_time={max(1, math.ceil(max_time))}", f"-exact_artifact_path={out}",
            crash]
    with tempfile.TemporaryDirectory(prefix=f"citynode-fuzz-{target}-") as tmp:
        code = subprocess.run(_worker_cmd(target, strict, args), cwd=REPO,
                              env=dict(os.environ, CITYNODE_FUZZ_TMP=tmp)).returncode
    print(f"minimised input: {out}" if out.exists() else "no smaller input found")
    return code


# -- seeds from the project's own examples ------------------------------------------------------------------------


def _write_seed(target: str, name: str, data: bytes) -> None:
    path = CORPUS / target
    path.mkdir(parents=True, exist_ok=True)
    (path / f"seed-{name}").write_bytes(data)


def reseed() -> None:
    """Write seed-* files: spec vectors (codecs/js/examples.json), LNS fixtures (tests/bridge/fixtures),
    example config and registries (examples/)."""
    import base64
    import struct

    from citynode_codec import p2p
    from tests.fuzz import targets

    for target in NAMES:
        for old in (CORPUS / target).glob("seed-*"):
            old.unlink()
    vectors = json.loads((REPO / "codecs/js/examples.json").read_text(encoding="utf-8"))
    fixtures = REPO / "tests/bridge/fixtures"
    frames: list[tuple[int, bytes]] = []
    for i, v in enumerate(vectors):
        if v["type"] in ("uplink", "downlink-decode"):
            fport, payload = v["input"]["fPort"], bytes(v["input"]["bytes"])
            _write_seed("codec", f"{i:02d}-{v['type']}-{fport}", bytes([fport & 0xFF]) + payload)
            if v["type"] == "uplink" and "data" in v["output"] and payload:
                frames.append((fport, payload))
        elif v["type"] == "downlink-encode":
            data = dict(v["input"]["data"] if "data" in v["input"] else v["input"])
            name = data.pop("message")
            data.pop("seq", None)
            kind = 1 if name == "set_geometry" else 0  # glass-0002 (fill) for geometry, else tree-0001 (soil)
            body = json.dumps({"command": name, **data, "request_id": f"req-{i}"}).encode()
            _write_seed("command", f"{i:02d}-{name}", bytes([kind, kind]) + body)
    _write_seed("command", "text-kind-and-device", bytes([3, 4, 3]) + b"abc" + bytes([9, 5]) + b"tree1"
                + b'{"command":"reboot"}')
    _write_seed("command", "not-json", bytes([0, 0]) + b"{command: reboot")

    cs_topic = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/ac1f09fffe000001/event/"
    for path in sorted(fixtures.glob("chirpstack_*.json")):
        raw = path.read_bytes()
        event = "up" if "_up_" in path.name else path.stem.split("_", 1)[1]
        doc = json.loads(raw)
        eui = doc["deviceInfo"]["devEui"]
        _write_seed("chirpstack", path.stem, cs_topic.replace("ac1f09fffe000001", eui).encode() + event.encode()
                    + b"\0" + raw)
        if event == "up":
            _write_seed("chirpstack", path.stem + "-no-topic", raw)
            _write_seed("pipeline", path.stem, bytes([3]) + struct.pack(">H", len(raw)) + raw)
    tts_docs = {}
    for path in sorted(fixtures.glob("tts_*.json")):
        raw = path.read_bytes()
        doc = json.loads(raw)
        ids = doc["end_device_ids"]
        event = "up" if "_up_" in path.name else path.stem.split("_", 1)[1]
        topic = f"v3/{ids['application_ids']['application_id']}@ttn/devices/{ids['device_id']}/{event}"
        _write_seed("tts", path.stem, topic.encode() + b"\0" + raw)
        if event == "up":
            tts_docs[ids["device_id"]] = doc
            mode = 2 | (4 if ids["device_id"] == "tree-0001" else 0)
            _write_seed("pipeline", path.stem, bytes([mode]) + struct.pack(">H", len(raw)) + raw)
    # Every spec uplink through each LNS, as the LNS would send it.
    up_cs = json.loads((fixtures / "chirpstack_up_soil.json").read_text(encoding="utf-8"))
    up_tts = tts_docs["glass-0002"]
    for n, (fport, payload) in enumerate(frames):
        eui = "ac1f09fffe000002" if fport == 2 else "ac1f09fffe000001"
        cs = dict(up_cs, fPort=fport, fCnt=100 + n, data=base64.b64encode(payload).decode(),
                  deviceInfo=dict(up_cs["deviceInfo"], devEui=eui))
        _write_seed("chirpstack", f"vector-{n:02d}-fport-{fport}", json.dumps(cs).encode())
        up = dict(up_tts["uplink_message"], f_port=fport, f_cnt=200 + n, frm_payload=base64.b64encode(payload).decode())
        ids = dict(up_tts["end_device_ids"], dev_eui=eui.upper())
        doc = dict(up_tts, uplink_message=up, end_device_ids=ids)
        _write_seed("tts", f"vector-{n:02d}-fport-{fport}", b"v3/city-containers@ttn/devices/glass-0002/up\0"
                    + json.dumps(doc).encode())
        # The pipeline target's built event: mode 9 = chirpstack, built, fresh time; then the fields it reads.
        eui_pick = 1 if fport == 2 else 0
        event = bytes([9, eui_pick, 1, fport & 0xFF, n % 200, len(payload)]) + payload + bytes([0, 5, 1, 1, 1])
        _write_seed("pipeline", f"vector-{n:02d}-fport-{fport}", event + bytes([0, 60]) + event)
        # The P2P receiver hears the same payloads from the keyed soil node.
        frame = p2p.build(p2p.UPLINK, bytes.fromhex("ac1f09fffe000003"), 1000 + n, fport, payload, targets.P2P_KEY)
        _write_seed("serial", f"vector-{n:02d}-fport-{fport}", b"\0+EVT:RXP2P:-70:8:" + frame.hex().upper().encode())
    for name, line in (("ok", b"OK"), ("busy", b"AT_BUSY_ERROR"), ("tx-done", b"+EVT:TXP2P DONE"),
                       ("timeout", b"+EVT:RXP2P RECEIVE TIMEOUT"), ("nwm", b"AT+NWM=0"),
                       ("garbled", b"+EVT:RXP2P:-70:x:C1"), ("short-frame", b"+EVT:RXP2P:-70:-7.25:C1AC1F"),
                       ("foreign-frame", b"+EVT:RXP2P:-112:-3:0102030405060708090A0B0C0D0E0F10111213")):
        _write_seed("serial", name, b"\0" + line)
    frame = p2p.build(p2p.UPLINK, bytes.fromhex("ac1f09fffe000004"), 5, 2, bytes.fromhex("20520918cf"), bytes(16))
    _write_seed("serial", "wrong-key-resigned", b"\x01+EVT:RXP2P:-70:8:" + frame.hex().encode())

    example = (REPO / "examples/bridge.toml").read_bytes()
    _write_seed("config", "example", example)
    usable = (example.replace(b"/etc/citynode/registry.toml", b"@SANDBOX@/registry.toml")
              .replace(b"/etc/citynode/chirpstack-ca.pem", b"@SANDBOX@/ca.pem")
              .replace(b"/etc/citynode/platform-ca.pem", b"@SANDBOX@/ca.pem"))
    _write_seed("config", "example-loadable", usable)
    _write_seed("config", "minimal", b'[input.chirpstack]\nhost = "lns"\nusername = "u"\n'
                b'password = {file = "@SANDBOX@/secret.txt"}\n\n[output]\nhost = "mqtt"\nusername = "b"\n'
                b'password = {env = "CITYNODE_OUTPUT_PASSWORD"}\n\n[registry]\npath = "@SANDBOX@/registry.toml"\n')
    _write_seed("config", "serial-sensorthings", b'[input.serial]\nport = "/dev/ttyUSB0"\nstate_path = "p2p.sqlite"\n'
                b'\n[output]\nhost = "mqtt"\nanonymous = true\nbase_topic = "city/sensors"\n\n[registry]\n'
                b'path = "@SANDBOX@/registry.toml"\n\n[pipeline]\nfiware = true\n[pipeline.sensorthings]\n'
                b'version = "v1.1"\nid_template = "{device_id}-{measurement}"\n'
                b'[pipeline.sensorthings.datastreams.glass-0002]\nfill_pct = 7\n')
    _write_seed("config", "shared-redis", b'[bridge]\nshared_group = "g"\ninstance = "a"\n\n[input.tts]\n'
                b'application_id = "app"\napi_key = {env = "CITYNODE_TTS_API_KEY"}\n\n[output]\nhost = "m"\n'
                b'username = "u"\npassword = "plain"\ntls = true\n\n[registry]\npath = "@SANDBOX@/registry.toml"\n'
                b'\n[dedup]\nredis_url = {env = "CITYNODE_REDIS_URL"}\n')
    for path in (REPO / "examples/registry.toml", REPO / "examples/registry.csv", fixtures / "registry.toml",
                 fixtures / "registry.csv"):
        _write_seed("registry", f"{path.parent.name}-{path.name}", path.read_bytes())
    _write_seed("registry", "text-ids.toml", b'[[device]]\ndev_eui = "AC-1F-09-FF-FE-00-00-05"\nkind = "fill"\n'
                b'labels = "ward=3;bin=large"\nthresholds = { fill_collection_pct = "70" }\n'
                b'datastreams = { fill_pct = "12", distance_m = "ds-dist-5" }\n')
    _write_seed("registry", "tab-separated", b"dev_eui\tkind\tname\tlabels\tdatastreams\n"
                b"ac1f09fffe0000aa\tfill\tbin-aa\tward=3;x=y\tfill_pct=12;distance_m=dm-1\n")


# -- command line -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        rest = argv[1:]
        strict = "--strict" in rest[:2]
        target = rest[0]
        extra = rest[rest.index("--") + 1:] if "--" in rest else []
        worker(target, strict, extra)
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="all", help=f"one of {', '.join(NAMES)}, or all")
    parser.add_argument("--runs", type=int, help="inputs per target (libFuzzer -runs)")
    parser.add_argument("--max-time", type=float, help="seconds per target (libFuzzer -max_total_time)")
    parser.add_argument("--chaos", type=int, metavar="TOTAL", help="at least TOTAL inputs, split by target speed")
    parser.add_argument("--summary", help="write the JSON summary here")
    parser.add_argument("--no-merge", action="store_true", help="do not merge new inputs into the corpus")
    parser.add_argument("--strict", action="store_true", help="known findings stop the fuzzer too")
    parser.add_argument("--artifacts", help="directory for crash inputs (default: a new temporary directory)")
    parser.add_argument("--seed", type=int, help="libFuzzer -seed")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="targets fuzzed at once")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs through --target, no atheris")
    parser.add_argument("--minimize", metavar="CRASH", help="minimise a crashing input for --target")
    parser.add_argument("--reseed", action="store_true", help="rewrite the seed-* files of every corpus")
    args = parser.parse_args(argv)

    if args.reseed:
        reseed()
        for name in NAMES:
            print(name, *corpus_stats(CORPUS / name))
        return 0
    names = list(NAMES) if args.target == "all" else [args.target]
    if any(n not in NAMES for n in names):
        parser.error(f"--target must be one of {', '.join(NAMES)} or all")
    if args.replay:
        return replay(names[0], args.replay, args.strict)
    if args.minimize:
        return minimize(names[0], args.minimize, args.max_time or 60, args.strict)
    artifacts = Path(args.artifacts) if args.artifacts else Path(tempfile.mkdtemp(prefix="citynode-fuzz-artifacts-"))
    if args.chaos:
        summary = chaos(args.chaos, artifacts=artifacts, strict=args.strict, seed=args.seed, jobs=args.jobs,
                        merge=not args.no_merge)
    else:
        runs = args.runs if args.runs is not None or args.max_time is not None else 20_000
        summary = run_all(names, runs={n: runs for n in names}, max_time=args.max_time, merge=not args.no_merge,
                          strict=args.strict, artifacts=artifacts, seed=args.seed, jobs=args.jobs)
    print_table(summary)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not summary["crashes"] and not args.artifacts:
        shutil.rmtree(artifacts, ignore_errors=True)
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
