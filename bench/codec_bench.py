"""Payload benchmarks: size and LoRa time on air of citynode's payloads against Cayenne LPP, CBOR, JSON and
commercial peers, and decode time in CPython against cbor2 and pycayennelpp, all measured in one run.

    .venv/bin/python -m bench.codec_bench
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit
from pathlib import Path

import cbor2
from cayennelpp import LppFrame

from citynode_codec import decode_uplink, encode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))
from citynode_fw.radio import dutycycle  # noqa: E402  - the firmware's own time-on-air code

LORAWAN_OVERHEAD = 13  # MHDR 1 + FHDR 7 + FPort 1 + MIC 4 (perf_reliability.md §1a)
SFS = (7, 9, 12)

SOIL = {"flags": [], "vwc_pct": 23.4, "soil_temperature_c": 12.5, "battery_v": 3.6}
FILL = {"flags": [], "fill_pct": 82, "distance_m": 0.36, "temperature_c": 9, "battery_v": 3.58}
# Eight samples, 15 minutes apart: soil drying slowly through a morning, a container filling through a day.
SOIL_SERIES = [(24.8, 11.2), (24.7, 11.0), (24.5, 10.9), (24.4, 10.9), (24.3, 11.1), (24.1, 11.6), (24.0, 12.2),
               (23.8, 12.9)]
FILL_SERIES = [(40, 0.82, 14), (41, 0.81, 14), (43, 0.79, 15), (44, 0.78, 15), (46, 0.76, 16), (47, 0.75, 16),
               (49, 0.73, 16), (51, 0.71, 17)]

# Commercial peers, payload bytes from their published codecs (device_peers.md §4, lns_formats.md §3.3).
PEERS = [
    ("Dragino LSE01 (soil: moisture, temp, EC, battery)", "soil", bytes.fromhex("ce2900f107a5099b6e2890")),
    ("Milesight EM310-UDL (fill: distance, battery, tilt)", "fill", bytes.fromhex("01755c03824408040001")),
    ("Decentlab DL-SMTP (soil profile, 8 depths + battery)", "soil", bytes(39)),
    ("Dingtek DF702 (fill: level, temp, tilt, alarms)", "fill", bytes(17)),
    ("Tekelek TEK 766 (fill, 4 readings per frame)", "fill", bytes(20)),
]
SAMPLES_PER_FRAME = {"Tekelek TEK 766 (fill, 4 readings per frame)": 4}


def airtime_ms(app_len: int, sf: int) -> float:
    return dutycycle.time_on_air_us(sf, 125000, app_len + LORAWAN_OVERHEAD) / 1000.0


def lpp_soil() -> bytes:
    f = LppFrame()
    f.add_humidity(1, 23.5)  # 0.5 % steps: the closest LPP type for water content
    f.add_temperature(2, 12.5)
    f.add_voltage(3, 3.6)
    return bytes(f)


def lpp_fill() -> bytes:
    f = LppFrame()
    f.add_percentage(1, 82)
    f.add_distance(2, 0.36)
    f.add_temperature(3, 9.0)
    f.add_voltage(4, 3.58)
    return bytes(f)


def _batch(kind: str) -> dict:
    if kind == "soil":
        samples = [{"vwc_pct": v, "soil_temperature_c": t} for v, t in SOIL_SERIES]
    else:
        samples = [{"fill_pct": f, "distance_m": d, "temperature_c": t} for f, d, t in FILL_SERIES]
    return {"node_kind": kind, "sample_interval_s": 900, "flags": [], "battery_v": 3.6, "samples": samples}


def _worst_batch() -> dict:
    samples = [{"fill_pct": (i * 37) % 100, "distance_m": (i * 531 % 900) / 100, "temperature_c": (i * 29) % 60 - 20}
               for i in range(8)]
    return {"node_kind": "fill", "sample_interval_s": 900, "flags": [], "battery_v": 3.6, "samples": samples}


def sizes() -> dict:
    """Bytes for one reading and for eight samples in each format."""
    out = {}
    soil_cn = encode("soil_reading", SOIL)[1]
    fill_cn = encode("fill_reading", FILL)[1]
    out["citynode"] = {"soil": len(soil_cn), "fill": len(fill_cn),
                       "soil_batch8": len(encode("batch", _batch("soil"))[1]),
                       "fill_batch8": len(encode("batch", _batch("fill"))[1]),
                       "fill_batch8_worst": len(encode("batch", _worst_batch())[1])}
    soil_doc = {"message": "soil_reading", **SOIL}
    fill_doc = {"message": "fill_reading", **FILL}
    out["cayenne_lpp"] = {"soil": len(lpp_soil()), "fill": len(lpp_fill())}
    out["cbor"] = {"soil": len(cbor2.dumps(soil_doc)), "fill": len(cbor2.dumps(fill_doc))}
    compact = {"separators": (",", ":")}
    out["json"] = {"soil": len(json.dumps(soil_doc, **compact)), "fill": len(json.dumps(fill_doc, **compact))}
    for name, kind, payload in PEERS:
        out[name] = {kind: len(payload), "samples_per_frame": SAMPLES_PER_FRAME.get(name, 1)}
    return out


def airtime(size_table: dict) -> dict:
    """Time on air per uplink and per sample when eight samples go in one uplink (or eight uplinks)."""
    out = {}
    for fmt, row in size_table.items():
        r = {}
        for kind in ("soil", "fill"):
            if kind not in row:
                continue
            for sf in SFS:
                single = airtime_ms(row[kind], sf)
                r[f"{kind}_sf{sf}_ms"] = round(single, 1)
                batch_len = row.get(f"{kind}_batch8")
                if batch_len is not None:
                    r[f"{kind}_sf{sf}_per_sample_batched_ms"] = round(airtime_ms(batch_len, sf) / 8, 1)
                else:  # no batching: one uplink per sample (or per the frame's own few readings)
                    r[f"{kind}_sf{sf}_per_sample_batched_ms"] = round(single / row.get("samples_per_frame", 1), 1)
        out[fmt] = r
    return out


def _per_call_us(fn, number: int, repeat: int = 7) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def decode_times() -> dict:
    soil_cn = encode("soil_reading", SOIL)[1]
    batch_cn = encode("batch", _batch("soil"))[1]
    soil_cbor = cbor2.dumps({"message": "soil_reading", **SOIL})
    soil_lpp = lpp_soil()
    n = 100_000
    return {
        "citynode_soil_reading_us": round(_per_call_us(lambda: decode_uplink(1, soil_cn), n), 3),
        "citynode_batch8_us": round(_per_call_us(lambda: decode_uplink(3, batch_cn), n // 10), 3),
        "cbor2_loads_us": round(_per_call_us(lambda: cbor2.loads(soil_cbor), n), 3),
        "pycayennelpp_us": round(_per_call_us(lambda: LppFrame.from_bytes(soil_lpp), n // 10), 3),
        "target_us": 1.0,
    }


def run(results: dict) -> None:
    table = sizes()
    results["codec"] = {"sizes": table, "airtime": airtime(table), "decode": decode_times(),
                        "targets": {"soil_bytes": 5, "fill_bytes": 5, "batch8_bytes": 20, "decode_us": 1.0}}


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def markdown(r: dict) -> str:
    c = r["codec"]
    sizes_ = c["sizes"]
    air = c["airtime"]
    t = c["targets"]
    cn = sizes_["citynode"]
    lines = ["## Payloads", "",
             "Command: `make bench` (or `.venv/bin/python -m bench.codec_bench`). Time on air: EU868, 125 kHz, "
             "CR 4/5, preamble 8, explicit header, CRC on, 13 bytes of LoRaWAN overhead (Semtech AN1200.13, "
             "computed by the firmware's own `radio/dutycycle.py`).", "",
             "| target | measured | |", "|---|---|---|",
             f"| soil reading ≤ {t['soil_bytes']} B | {cn['soil']} B | {_ok(cn['soil'] <= t['soil_bytes'])} |",
             f"| fill reading ≤ {t['fill_bytes']} B | {cn['fill']} B | {_ok(cn['fill'] <= t['fill_bytes'])} |",
             f"| 8 batched soil samples ≤ {t['batch8_bytes']} B | {cn['soil_batch8']} B | "
             f"{'met' if cn['soil_batch8'] <= t['batch8_bytes'] else 'MISSED'} |",
             f"| 8 batched fill samples ≤ {t['batch8_bytes']} B | {cn['fill_batch8']} B | "
             f"{'met' if cn['fill_batch8'] <= t['batch8_bytes'] else 'MISSED'} |",
             f"| 8 fill samples, worst case (values jumping at random) | {cn['fill_batch8_worst']} B | for reference |",
             "", "Bytes per uplink and time on air (ms) for the same readings; *per sample* is one eighth of a "
             "batched uplink of eight samples, or one whole uplink for formats that cannot batch.", "",
             "| format | soil B | fill B | soil SF7 | soil SF9 | soil SF12 | fill SF9 | per soil sample SF9 | "
             "per fill sample SF9 |", "|---|---|---|---|---|---|---|---|---|"]
    for fmt, row in sizes_.items():
        a = air[fmt]

        def cell(key, a=a):
            return "" if key not in a else f"{a[key]}"

        lines.append(f"| {fmt} | {row.get('soil', '')} | {row.get('fill', '')} | {cell('soil_sf7_ms')} | "
                     f"{cell('soil_sf9_ms')} | {cell('soil_sf12_ms')} | {cell('fill_sf9_ms')} | "
                     f"{cell('soil_sf9_per_sample_batched_ms')} | {cell('fill_sf9_per_sample_batched_ms')} |")
    d = c["decode"]
    verdict = "met" if d["citynode_soil_reading_us"] <= d["target_us"] else "MISSED"
    lines += ["", "Decode time per payload in CPython, median of 7 runs, same process:", "",
              "| decoder | µs per payload |", "|---|---|",
              f"| citynode soil reading (5 B) | {d['citynode_soil_reading_us']} ({verdict}: target ≤ "
              f"{d['target_us']} µs) |",
              f"| citynode batch of 8 soil samples | {d['citynode_batch8_us']} |",
              f"| cbor2.loads, same reading as CBOR | {d['cbor2_loads_us']} |",
              f"| pycayennelpp, same reading as Cayenne LPP | {d['pycayennelpp_us']} |"]
    if verdict == "MISSED":
        lines += ["", "The 1 µs target is missed: the generated straight-line decoder (`_fast.py`) costs about "
                      "one Python-level operation per field plus building the result dict; CPython's "
                      "interpreter overhead per operation is the limit (cbor2's C decoder is in the same "
                      "range for the same content). At LoRa rates this is far below the MQTT cost per "
                      "message (about 140-300 µs, perf_reliability.md §2d)."]
    lines += ["", "Commercial peers' sizes come from their published codecs: the Dragino LSE01 and Milesight "
                  "EM310-UDL bytes are their own examples; Decentlab DL-SMTP, Dingtek DF702 and Tekelek TEK 766 "
                  "by their documented frame lengths (device_peers.md §4). They carry other fields (EC, "
                  "tilt, several depths), so bytes per reading is the comparison, not field for field."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    res: dict = {}
    run(res)
    print(markdown(res))
