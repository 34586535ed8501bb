"""Energy model: battery life of a node from the firmware benchmark's measured wake cycles and documented
currents. Each parameter carries its source; the awake times come from the firmware run (bench/firmware_bench).

Scenario of the target: 15-minute sampling, hourly uplinks (a batch of 4) at SF9, one 3.6 Ah Li-SOCl2 cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))
from citynode_fw.radio import dutycycle  # noqa: E402

# name: (value, unit, source)
PARAMS = {
    "esp32_deep_sleep": (10e-3, "mA", "RAK11200 datasheet: ESP32-WROVER deep sleep about 10 µA "
                                      "(device_modems.md §1.1)"),
    "rak3172_sleep": (1.69e-3, "mA", "RAK3172 datasheet: sleep 1.69 µA at 3.3 V (device_modems.md §1.1)"),
    "divider_leak": (1.8e-3, "mA", "design: 2 x 1 MΩ battery divider at 3.6 V"),
    "esp32_cpu": (35.0, "mA", "ESP32 datasheet, modem-sleep (radio off) at 160 MHz: 27-44 mA"),
    "esp32_idle": (20.0, "mA", "ESP32 modem-sleep, CPU idle in time.sleep_ms (WROOM-32 manual table 5: max 20 mA)"),
    "esp32_light_sleep": (0.8, "mA", "ESP32 light sleep 0.8 mA (WROOM-32 manual table 5)"),
    "boot_stock_mc": (41.9, "mC", "glenn20/upy-esp32-experiments: stock MicroPython, deep-sleep wake to main.py "
                                  "and back, 635 ms, 41.9 mC"),
    "boot_fast_mc": (3.32, "mC", "same study, ESP32 with bootloader validation skipped and the app frozen "
                                 "(_boot.py): 70 ms, 3.32 mC"),
    "rak3172_tx": (87.0, "mA", "RAK3172 datasheet: TX 87 mA at 20 dBm, 868 MHz (EU868 uses 14 dBm: conservative)"),
    "rak3172_rx": (5.22, "mA", "RAK3172 datasheet: RX 5.22 mA"),
    "rx_windows_ms": (80.0, "ms", "two receive windows of ~8 SF9 symbols each (4.1 ms per symbol) with margin"),
    "probe_current": (5.0, "mA", "capacitive soil probe v1.2 class: about 5 mA while powered"),
    "ds18b20_current": (1.5, "mA", "DS18B20 datasheet: active current 1-1.5 mA during conversion"),
    "ds18b20_conversion_ms": (750.0, "ms", "DS18B20 datasheet: 12-bit conversion time 750 ms"),
    "a02yyuw_current": (8.0, "mA", "DFRobot SEN0311 wiki: average operating current <= 8 mA"),
    "cpu_slowdown": (50.0, "x", "assumption: MicroPython on an ESP32 at 160 MHz runs this Python about 50x slower "
                                "than on the x86 core of the benchmark; replace with a HIL measurement"),
    "capacity_mah": (3600.0, "mAh", "one 3.6 Ah Li-SOCl2 cell (issue target)"),
    "self_discharge": (0.01, "1/year", "Li-SOCl2 bobbin cells: about 1 % per year"),
    "usable": (0.95, "1", "5 % left unused at end of life (voltage cutoff)"),
}


def _p(name: str) -> float:
    return PARAMS[name][0]


def _years(ma_h_per_day: float) -> float:
    per_year = ma_h_per_day * 365
    return _p("capacity_mah") * _p("usable") / (per_year + _p("capacity_mah") * _p("self_discharge"))


def profile(kind: dict, *, fast_boot: bool, light_sleep_sensors: bool) -> dict:
    """Daily charge (mAh) by term for one node kind, from its measured wake cycles."""
    wakes_per_day = 96
    ratio = wakes_per_day / kind["wakes"]
    uplinks = kind["uplinks"] * ratio
    mean_len = sum(kind["uplink_bytes"]) / max(1, len(kind["uplink_bytes"]))
    toa_ms = dutycycle.time_on_air_us(9, 125000, int(round(mean_len)) + 13) / 1000.0
    sensor_ma = _p("probe_current") if kind["kind"] == "soil" else _p("a02yyuw_current")
    mc = {}
    mc["boot"] = wakes_per_day * (_p("boot_fast_mc") if fast_boot else _p("boot_stock_mc"))
    cpu_s = kind["cpu_us_per_wake"] * 1e-6 * _p("cpu_slowdown")
    mc["python work"] = wakes_per_day * cpu_s * _p("esp32_cpu")
    # The DS18B20 conversion (and an analog probe's settling) can light-sleep; reading UART frames cannot.
    sleepable_ms = min(kind["sensor_ms_per_wake"], _p("ds18b20_conversion_ms"))
    awake_ms = kind["sensor_ms_per_wake"] - sleepable_ms
    waiting = _p("esp32_light_sleep") if light_sleep_sensors else _p("esp32_idle")
    mc["sensors"] = wakes_per_day / 1000.0 * (sleepable_ms * (waiting + _p("ds18b20_current"))
                                              + awake_ms * (_p("esp32_idle") + sensor_ma))
    radio_s_per_uplink = kind["radio_ms_per_wake"] * kind["wakes"] / max(1, kind["uplinks"]) / 1000.0
    mc["radio: ESP32 awake for the modem"] = uplinks * radio_s_per_uplink * _p("esp32_idle")
    mc["radio: transmit"] = uplinks * toa_ms / 1000.0 * _p("rak3172_tx")
    mc["radio: receive windows"] = uplinks * _p("rx_windows_ms") / 1000.0 * _p("rak3172_rx")
    mc["deep sleep"] = 86400 * (_p("esp32_deep_sleep") + _p("rak3172_sleep") + _p("divider_leak"))
    mah = {k: v / 3600.0 for k, v in mc.items()}
    total = sum(mah.values())
    return {"mah_per_day": {k: round(v, 4) for k, v in mah.items()}, "total_mah_per_day": round(total, 3),
            "years": round(_years(total), 1), "uplinks_per_day": round(uplinks, 1), "toa_sf9_ms": round(toa_ms, 1)}


PROFILES = {
    "as built: stock MicroPython image, app as .mpy files": {"fast_boot": False, "light_sleep_sensors": True},
    "low-power image: app frozen, bootloader validation skipped": {"fast_boot": True, "light_sleep_sensors": True},
}


def model(fw: dict) -> dict:
    out = {"params": {k: {"value": v[0], "unit": v[1], "source": v[2]} for k, v in PARAMS.items()},
           "target_years": 8.0, "profiles": {}}
    for name, opts in PROFILES.items():
        out["profiles"][name] = {kind: profile(m, **opts) for kind, m in fw["kinds"].items()}
    return out


def markdown(e: dict) -> str:
    lines = ["### Battery life", "",
             "15-minute sampling, a batch uplink every hour at SF9, one 3.6 Ah Li-SOCl2 cell. Awake times and "
             "uplinks come from the measured wake cycles above; currents and boot costs from the sources listed "
             "below. The ESP32 light-sleeps while analog probes settle and the DS18B20 converts "
             "(hal/esp32.py IdleClock) and stays awake (idle) while the modem transmits and listens.", ""]
    first = next(iter(e["profiles"].values()))
    terms = list(first["soil"]["mah_per_day"])
    header = "| mAh per day | " + " | ".join(f"{p} ({k})" for p in e["profiles"] for k in ("soil", "fill")) + " |"
    lines += [header, "|---" * (1 + 2 * len(e["profiles"])) + "|"]
    for term in terms:
        cells = [f"{e['profiles'][p][k]['mah_per_day'][term]:.3f}" for p in e["profiles"] for k in ("soil", "fill")]
        lines.append(f"| {term} | " + " | ".join(cells) + " |")
    totals = [f"**{e['profiles'][p][k]['total_mah_per_day']:.3f}**" for p in e["profiles"] for k in ("soil", "fill")]
    years = [f"**{e['profiles'][p][k]['years']}**" for p in e["profiles"] for k in ("soil", "fill")]
    lines += ["| total | " + " | ".join(totals) + " |", "| years on 3.6 Ah | " + " | ".join(years) + " |", ""]
    for p, per_kind in e["profiles"].items():
        worst = min(v["years"] for v in per_kind.values())
        verdict = "met" if worst >= e["target_years"] else "MISSED"
        lines.append(f"- {p}: {worst} years for the hungrier kind, target ≥ {e['target_years']:.0f}: **{verdict}**.")
    lines += ["", "What limits it: waking MicroPython from deep sleep (stock image: 635 ms and 42 mC per wake, "
                  "96 wakes a day) and the ESP32 waiting, awake, for the modem's TX_DONE after the receive windows. "
                  "The frozen image (firmware/manifest.py, built with CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP) "
                  "removes most of the first; the second would need the ESP32 to light-sleep with UART wake-up "
                  "while the modem works, which is not implemented.", "", "Parameters:", "",
              "| parameter | value | source |", "|---|---|---|"]
    for k, v in e["params"].items():
        lines.append(f"| {k} | {v['value']} {v['unit']} | {v['source']} |")
    return "\n".join(lines) + "\n"
