"""The emulated RAK3172 (RUI3 AT firmware) in virtual time: exact replies, status strings, events and timing.

Expected strings come from the RUI3 source (RAKWireless/RAK-STM32-RUI cli/atcmd*.c, service_lora*.c) as quoted in
shared/reference/device_modems.md, and from the RUI3 AT command manual.
"""

from __future__ import annotations

import math

import pytest

from citynode.emulation.air import REGIONS, Air, P2PConfig, lora_time_on_air_ms
from citynode.emulation.lns import LoopbackNetwork
from citynode.emulation.rak3172 import (
    RAK3172,
    STATUSES,
    ClockError,
    Faults,
    JoinAccept,
    Outcome,
)

DEV_EUI = "AC1F09FFFE000001"


class Host:
    """Drives a modem in virtual time and collects what it prints."""

    def __init__(self, modem: RAK3172, t: int = 0):
        self.modem = modem
        self.t = t
        self.log: list[tuple[int, bytes]] = []

    def send(self, line: str, *, wait_ms: int = 50) -> str:
        """Write `line` + CRLF now, then run `wait_ms` of virtual time; return what was printed meanwhile."""
        self.modem.write(line.encode() + b"\r\n", self.t)
        return self.run(wait_ms)

    def run(self, ms: int) -> str:
        end = self.t + ms
        chunks = []
        while True:
            due = self.modem.next_event_ms()
            if due is None or due > end:
                break
            self.t = max(self.t, due)
            out = self.modem.read(self.t)
            if out:
                self.log.append((self.t, out))
                chunks.append(out)
        self.t = end
        return b"".join(chunks).decode("latin-1")

    def until(self, text: str, limit_ms: int = 120_000) -> tuple[int, str]:
        """Run until `text` has been printed; return (virtual time it appeared, everything printed)."""
        seen = ""
        end = self.t + limit_ms
        while self.t < end:
            due = self.modem.next_event_ms()
            if due is None or due > end:
                break
            self.t = max(self.t, due)
            out = self.modem.read(self.t).decode("latin-1")
            seen += out
            if text in seen:
                return self.t, seen
        raise AssertionError(f"{text!r} not printed within {limit_ms} ms; got {seen!r}")


class ScriptedNetwork:
    """A network whose answers the test decides: records every call."""

    def __init__(self, *, accept: bool = True, heard: bool = True, acked: bool = True):
        self.accept, self.heard, self.acked = accept, heard, acked
        self.joins: list[int] = []
        self.uplinks: list[dict] = []
        self.downlinks: list[tuple[int, bytes, bool]] = []

    def join(self, dev_eui, join_eui, app_key, now_ms, *, dr=0):
        self.joins.append(now_ms)
        return JoinAccept(bytes.fromhex("00189440"), -40, 9) if self.accept else None

    def uplink(self, dev_eui, fcnt, port, payload, confirmed, dr, now_ms, *, ack=False, adr=False):
        self.uplinks.append(dict(fcnt=fcnt, port=port, payload=payload, confirmed=confirmed, dr=dr, now_ms=now_ms,
                                 ack=ack))
        down = self.downlinks.pop(0) if self.downlinks and self.heard else None
        return Outcome(self.heard, self.acked and confirmed, down[:2] if down else None, bool(down and down[2]),
                       -71, 7)


def modem(**kw) -> RAK3172:
    kw.setdefault("dev_eui", DEV_EUI)
    kw.setdefault("booted", True)
    return RAK3172(**kw)


def joined_host(network=None, dr: int = 5, **kw) -> Host:
    host = Host(modem(network=network if network is not None else ScriptedNetwork(), **kw))
    assert host.send(f"AT+DR={dr}") == "OK\r\n"
    host.send("AT+JOIN")
    host.until("+EVT:JOINED")
    return host


# -- the command line -------------------------------------------------------------------------------------------


def test_power_up_prints_the_rui3_banner_and_ignores_input_while_booting():
    m = RAK3172(dev_eui=DEV_EUI, boot_ms=100)
    host = Host(m)
    m.write(b"AT\r\n", 10)  # lost: the firmware is not up yet
    assert host.run(200) == ("RAKwireless RAK3172-E Example\r\n" + "-" * 54 + "\r\nCurrent Work Mode: LoRaWAN.\r\n")
    assert host.send("AT") == "OK\r\n"


def test_every_status_string_is_the_rui3_table_in_order():
    assert STATUSES == ("OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR", "AT_TEST_PARAM_OVERFLOW",
                        "AT_NO_CLASSB_ENABLE", "AT_NO_NETWORK_JOINED", "AT_RX_ERROR", "AT_MODE_NO_SUPPORT",
                        "AT_COMMAND_NOT_FOUND", "AT_UNSUPPORTED_BAND")


def test_unknown_command_answers_at_command_not_found():
    host = Host(modem())
    assert host.send("AT+NOPE=1") == "AT_COMMAND_NOT_FOUND\r\n"


def test_echo_is_off_until_ate_then_each_character_and_lf_cr_are_echoed():
    host = Host(modem())
    assert host.send("ATE") == "OK\r\n"
    assert host.send("AT") == "AT\n\rOK\r\n"
    assert host.send("ATE") == "ATE\n\rOK\r\n"
    assert host.send("AT") == "OK\r\n"


def test_query_prints_the_canonical_command_name_then_ok():
    host = Host(modem())
    assert host.send("at+deveui=?") == f"AT+DEVEUI={DEV_EUI}\r\nOK\r\n"
    assert host.send("AT+CLASS=?") == "AT+CLASS=A\r\nOK\r\n"
    assert host.send("AT+NJS=?") == "AT+NJS=0\r\nOK\r\n"
    assert host.send("AT+VER=?") == "AT+VER=RUI_4.1.1_RAK3172-E\r\nOK\r\n"
    assert host.send("AT+JOIN=?") == "AT+JOIN=0:0:8:0\r\nOK\r\n"


def test_help_prints_name_permissions_and_usage_then_ok():
    host = Host(modem())
    assert host.send("AT+DEVEUI?") == "AT+DEVEUI,RW: get or set the device EUI (8 bytes in hex)\r\nOK\r\n"
    assert host.send("AT+SEND?") == "AT+SEND,W: send data along with the application port\r\nOK\r\n"
    listing = host.send("AT?")
    assert listing.startswith("\r\nAT+<CMD>?: help on <CMD>\r\n") and listing.endswith("OK\r\n")
    assert "AT+NJS,R: get the join status (0 = not joined, 1 = joined)\r\n" in listing


def test_settings_are_stored_and_read_back():
    host = Host(modem())
    for cmd in ("AT+NWM=1", "AT+NJM=1", "AT+CLASS=C", "AT+BAND=5", "AT+APPEUI=1000000000000009",
                "AT+APPKEY=04FA4E626EF5CF227C969601176275C2", "AT+ADR=1", "AT+DR=3", "AT+CFM=1", "AT+RETY=7"):
        assert host.send(cmd) == "OK\r\n", cmd
    assert host.send("AT+APPKEY=?") == "AT+APPKEY=04FA4E626EF5CF227C969601176275C2\r\nOK\r\n"
    assert host.send("AT+BAND=?") == "AT+BAND=5\r\nOK\r\n"
    assert host.send("AT+DR=?") == "AT+DR=3\r\nOK\r\n"
    assert host.send("AT+CLASS=?") == "AT+CLASS=C\r\nOK\r\n"
    assert host.send("AT+RETY=?") == "AT+RETY=7\r\nOK\r\n"


@pytest.mark.parametrize("cmd, status", [
    ("AT+NJM=2", "AT_PARAM_ERROR"), ("AT+ADR=5", "AT_PARAM_ERROR"), ("AT+CFM=x", "AT_PARAM_ERROR"),
    ("AT+RETY=8", "AT_PARAM_ERROR"), ("AT+DR=8", "AT_PARAM_ERROR"), ("AT+CLASS=D", "AT_PARAM_ERROR"),
    ("AT+DEVEUI=1122", "AT_PARAM_ERROR"), ("AT+DEVEUI=ZZ22334455667788", "AT_PARAM_ERROR"),
    ("AT+APPKEY=04FA4E626EF5CF227C969601176275", "AT_PARAM_ERROR"), ("AT+BAND=13", "AT_PARAM_ERROR"),
    ("AT+BAND=0", "AT_UNSUPPORTED_BAND"), ("AT+NWM=3", "AT_PARAM_ERROR"), ("AT+NWM=01", "AT_PARAM_ERROR"),
    ("AT+RX1DL=16", "AT_PARAM_ERROR"), ("AT+JN1DL=6", "AT_PARAM_ERROR"), ("AT+JOIN=1:0:6:0", "AT_PARAM_ERROR"),
    ("AT+JOIN=2", "AT_PARAM_ERROR"), ("AT+SLEEP=0", "AT_PARAM_ERROR"), ("AT+DEVEUI=", "AT_PARAM_ERROR"),
    ("AT+SEND=?", "AT_PARAM_ERROR"), ("AT+VER=1", "AT_PARAM_ERROR"), ("ATE=1", "AT_PARAM_ERROR"),
    ("AT+" + "X" * 40, "AT_ERROR"),
])
def test_bad_values_get_the_rui3_status(cmd, status):
    host = Host(modem())
    assert host.send(cmd) == status + "\r\n"


def test_us915_has_only_five_uplink_data_rates():
    host = Host(modem())
    assert host.send("AT+BAND=5") == "OK\r\n"
    assert host.send("AT+DR=4") == "OK\r\n"
    assert host.send("AT+DR=5") == "AT_PARAM_ERROR\r\n"


def test_lorawan_commands_answer_mode_no_support_in_p2p_mode_and_p2p_commands_in_lorawan_mode():
    host = Host(modem())
    assert host.send("AT+PSEND=0102") == "AT_MODE_NO_SUPPORT\r\n"
    assert host.send("AT+P2P=?") == "AT_MODE_NO_SUPPORT\r\n"
    host.send("AT+NWM=0", wait_ms=500)
    assert host.send("AT+SEND=2:0102") == "AT_MODE_NO_SUPPORT\r\n"
    assert host.send("AT+DEVEUI=?") == "AT_MODE_NO_SUPPORT\r\n"
    assert host.send("AT+P2P=?") == "AT+P2P=868000000:7:125:0:8:14\r\nOK\r\n"


def test_changing_the_work_mode_restarts_with_the_new_banner_and_no_status():
    host = Host(modem(echo=True))
    out = host.send("AT+NWM=0", wait_ms=500)
    assert out == "AT+NWM=0\n\rRAKwireless RAK3172-E Example\r\n" + "-" * 54 + "\r\nCurrent Work Mode: LoRa P2P.\r\n"
    assert host.send("AT+NWM=?") == "AT+NWM=?\n\rAT+NWM=0\r\nOK\r\n"  # echo kept: it lives in flash
    assert host.send("AT+NWM=0") == "AT+NWM=0\n\rOK\r\n"  # same mode: no restart


def test_command_split_across_writes_and_backspace_edits_the_line():
    m = modem()
    host = Host(m)
    m.write(b"AT+DEV", 0)
    m.write(b"EUX\x7fI=?", 5)
    m.write(b"\r", 6)
    host.t = 6
    assert host.run(100) == f"\x08 \x08AT+DEVEUI={DEV_EUI}\r\nOK\r\n"
    m.write(b"\n", host.t)  # the LF of CRLF on an empty line is ignored
    assert host.run(100) == ""


def test_answers_come_after_the_processing_delay_and_in_order():
    m = modem(response_ms=10)
    m.write(b"AT\r\nAT+NJS=?\r\n", 0)
    assert m.next_event_ms() == 10
    assert m.read(9) == b""
    assert m.read(10) == b"OK\r\nAT+NJS=0\r\nOK\r\n"


def test_time_going_backwards_is_a_clock_error():
    m = modem()
    m.read(100)
    with pytest.raises(ClockError) as err:
        m.write(b"AT\r\n", 50)
    assert (err.value.now_ms, err.value.last_ms) == (50, 100)


# -- join and send ---------------------------------------------------------------------------------------------


def test_join_answers_ok_then_joined_after_the_five_second_join_accept_delay():
    net = ScriptedNetwork()
    host = Host(modem(network=net))
    host.send("AT+DR=5")
    start = host.t
    assert host.send("AT+JOIN", wait_ms=20) == "OK\r\n"
    at, out = host.until("+EVT:JOINED")
    assert out == "+EVT:JOINED\r\n"
    toa = lora_time_on_air_ms(23, 7)
    assert net.joins == [start + 10 + math.ceil(toa)]  # the network hears the request when it has gone out
    assert 5000 <= at - net.joins[0] <= 6000
    assert host.send("AT+NJS=?") == "AT+NJS=1\r\nOK\r\n"
    assert host.send("AT+DEVADDR=?") == "AT+DEVADDR=00189440\r\nOK\r\n"


def test_join_that_gets_no_accept_fails_with_rx_timeout_and_retries_as_asked():
    net = ScriptedNetwork(accept=False)
    host = Host(modem(network=net))
    assert host.send("AT+JOIN=1:0:7:2") == "OK\r\n"
    _, out = host.until("+EVT:JOIN_FAILED_RX_TIMEOUT\r\n+EVT:JOIN_FAILED_RX_TIMEOUT\r\n+EVT:JOIN_FAILED_RX_TIMEOUT")
    assert len(net.joins) == 3
    assert net.joins[1] - net.joins[0] >= 7000 + 6000
    assert host.run(60_000) == ""  # no fourth attempt
    assert host.send("AT+NJS=?") == "AT+NJS=0\r\nOK\r\n"


def test_join_while_a_join_is_pending_is_busy_and_join_0_stops_it():
    host = Host(modem(network=ScriptedNetwork()))
    host.send("AT+JOIN")
    assert host.send("AT+JOIN") == "AT_BUSY_ERROR\r\n"
    assert host.send("AT+JOIN=0") == "OK\r\n"
    assert host.run(20_000) == ""


def test_join_failure_knob_overrides_an_accepting_network():
    host = Host(modem(network=ScriptedNetwork(), faults=Faults(join_failures=1)))
    host.send("AT+DR=5")
    host.send("AT+JOIN")
    assert host.until("+EVT:JOIN_FAILED_RX_TIMEOUT")[1] == "+EVT:JOIN_FAILED_RX_TIMEOUT\r\n"
    host.send("AT+JOIN")
    host.until("+EVT:JOINED")


def test_join_failure_probability_is_repeatable_with_a_seed():
    def outcomes(seed: int) -> list[str]:
        host = Host(modem(network=ScriptedNetwork(), seed=seed, faults=Faults(join_failure_probability=0.5)))
        host.send("AT+DR=5")
        results = []
        for _ in range(8):
            host.send("AT+JOIN")
            _, out = host.until("+EVT:JOIN")
            results.append(out.strip())
            host.run(8000)
        return results

    first = outcomes(7)
    assert first == outcomes(7)
    assert {"+EVT:JOINED", "+EVT:JOIN_FAILED_RX_TIMEOUT"} == set(first)


def test_no_network_means_no_join():
    host = Host(modem(network=None))
    host.send("AT+JOIN")
    assert host.until("+EVT:JOIN_FAILED_RX_TIMEOUT")[1] == "+EVT:JOIN_FAILED_RX_TIMEOUT\r\n"


def test_send_before_join_is_no_network_joined():
    host = Host(modem())
    assert host.send("AT+SEND=2:0102") == "AT_NO_NETWORK_JOINED\r\n"


@pytest.mark.parametrize("cmd", ["AT+SEND=0:01", "AT+SEND=224:01", "AT+SEND=2:012", "AT+SEND=2:0G",
                                 "AT+SEND=2", "AT+SEND=2:", "AT+SEND=x:01", "AT+SEND=2:" + "00" * 251])
def test_send_checks_port_and_hex_before_anything_else(cmd):
    host = Host(modem())
    assert host.send(cmd) == "AT_PARAM_ERROR\r\n"


def test_send_longer_than_the_data_rate_allows_is_a_param_error():
    host = joined_host(dr=0)
    assert host.send("AT+SEND=2:" + "00" * 52) == "AT_PARAM_ERROR\r\n"
    assert host.send("AT+SEND=2:" + "00" * 51) == "OK\r\n"


def test_unconfirmed_send_prints_tx_done_when_the_rx2_window_has_closed():
    net = ScriptedNetwork()
    host = joined_host(net)
    start = host.t
    assert host.send("AT+SEND=2:0102", wait_ms=20) == "OK\r\n"
    assert host.send("AT+SEND=2:0102", wait_ms=20) == "AT_BUSY_ERROR\r\n"
    at, out = host.until("+EVT:TX_DONE")
    assert out == "+EVT:TX_DONE\r\n"
    tx_end = start + 10 + math.ceil(REGIONS["EU868"].time_on_air_ms(2, 5))
    assert net.uplinks[0]["now_ms"] == tx_end
    assert net.uplinks[0] | {"now_ms": 0} == dict(fcnt=0, port=2, payload=b"\x01\x02", confirmed=False, dr=5,
                                                  now_ms=0, ack=False)
    assert at >= tx_end + 2000  # after RX2 opened (RX2 delay 2 s)
    assert host.send("AT+SEND=3:AA") == "OK\r\n"  # free again


def test_old_firmware_prints_nothing_after_an_unconfirmed_send():
    host = joined_host(firmware_version="3.4.2")
    assert host.send("AT+SEND=2:0102", wait_ms=10_000) == "OK\r\n"


def test_confirmed_send_is_retried_with_the_same_counter_then_fails_with_status():
    net = ScriptedNetwork(acked=False)
    host = joined_host(net)
    host.send("AT+CFM=1")
    host.send("AT+RETY=2")
    host.send("AT+SEND=2:0102")
    _, out = host.until("+EVT:SEND_CONFIRMED_FAILED")
    assert out == "+EVT:SEND_CONFIRMED_FAILED(4)\r\n"
    assert [u["fcnt"] for u in net.uplinks] == [0, 0, 0]
    assert all(u["confirmed"] for u in net.uplinks)
    assert host.send("AT+CFS=?") == "AT+CFS=0\r\nOK\r\n"


def test_old_firmware_prints_a_bare_confirmed_failure():
    host = joined_host(ScriptedNetwork(acked=False), firmware_version="4.0.1")
    host.send("AT+CFM=1")
    host.send("AT+SEND=2:0102")
    assert host.until("+EVT:SEND_CONFIRMED_FAILED")[1] == "+EVT:SEND_CONFIRMED_FAILED\r\n"


def test_confirmed_send_succeeds_when_a_retry_is_acknowledged():
    net = ScriptedNetwork()
    host = joined_host(net, faults=Faults(ack_failures=1))
    host.send("AT+CFM=1")
    host.send("AT+RETY=1")
    host.send("AT+SEND=2:0102")
    assert host.until("+EVT:SEND_CONFIRMED")[1] == "+EVT:SEND_CONFIRMED_OK\r\n"
    assert len(net.uplinks) == 2
    assert host.send("AT+CFS=?") == "AT+CFS=1\r\nOK\r\n"


def test_downlink_is_printed_after_the_confirmation_in_lowercase_and_recv_reads_it_back_in_uppercase():
    net = ScriptedNetwork()
    host = joined_host(net)
    net.downlinks.append((10, bytes.fromhex("0102abcd"), False))
    start = host.t
    host.send("AT+SEND=2:0102")
    at, out = host.until("+EVT:RX_1")
    assert out == "+EVT:TX_DONE\r\n+EVT:RX_1:-71:7:UNICAST:10:0102abcd\r\n"
    assert start + 1000 < at < start + 2000  # in RX1, so before RX2 would have closed
    assert host.send("AT+RECV=?") == "AT+RECV=10:0102ABCD\r\nOK\r\n"
    assert host.send("AT+RSSI=?") == "AT+RSSI=-71\r\nOK\r\n"
    assert host.send("AT+SNR=?") == "AT+SNR=7\r\nOK\r\n"


def test_confirmed_downlink_makes_the_modem_send_an_empty_uplink_with_the_ack_bit():
    net = ScriptedNetwork()
    host = joined_host(net)
    net.downlinks.append((10, b"\x01", True))
    host.send("AT+SEND=2:0102")
    host.until("+EVT:RX_1")
    assert host.send("AT+SEND=2:03") == "AT_BUSY_ERROR\r\n"  # the automatic uplink is going out
    assert host.until("+EVT:TX_DONE")[1] == "+EVT:TX_DONE\r\n"
    assert net.uplinks[1] | {"now_ms": 0} == dict(fcnt=1, port=None, payload=b"", confirmed=False, dr=5, now_ms=0,
                                                  ack=True)


def test_frame_counter_counts_sends_and_restarts_at_zero_on_join():
    net = ScriptedNetwork()
    host = joined_host(net)
    for _ in range(3):
        host.send("AT+SEND=2:01")
        host.until("+EVT:TX_DONE")
    host.send("AT+JOIN")
    host.until("+EVT:JOINED")
    host.send("AT+SEND=2:01")
    host.until("+EVT:TX_DONE")
    assert [u["fcnt"] for u in net.uplinks] == [0, 1, 2, 0]


def test_uplink_nobody_hears_still_ends_in_tx_done_without_downlink():
    net = ScriptedNetwork(heard=False)
    host = joined_host(net)
    net.downlinks.append((10, b"\x01", False))
    host.send("AT+SEND=2:01")
    assert host.until("+EVT:TX_DONE")[1] == "+EVT:TX_DONE\r\n"
    assert host.run(5000) == ""


def test_atz_resets_the_session_but_keeps_flash_settings():
    host = joined_host(LoopbackNetwork())
    host.send("AT+APPEUI=1000000000000009")
    assert host.send("ATZ", wait_ms=500).endswith("Current Work Mode: LoRaWAN.\r\n")
    assert host.send("AT+NJS=?") == "AT+NJS=0\r\nOK\r\n"
    assert host.send("AT+APPEUI=?") == "AT+APPEUI=1000000000000009\r\nOK\r\n"
    assert host.send("AT+DR=?") == "AT+DR=5\r\nOK\r\n"


def test_auto_join_starts_a_join_after_reset():
    host = Host(modem(network=ScriptedNetwork()))
    host.send("AT+DR=5")
    host.send("AT+JOIN=1:1:8:0")
    host.until("+EVT:JOINED")
    host.send("ATZ", wait_ms=0)
    assert host.until("+EVT:JOINED")[1].endswith("Current Work Mode: LoRaWAN.\r\n+EVT:JOINED\r\n")


def test_abp_mode_counts_as_joined():
    host = Host(modem())
    host.send("AT+NJM=0")
    assert host.send("AT+NJS=?") == "AT+NJS=1\r\nOK\r\n"
    assert host.send("AT+SEND=2:01") == "OK\r\n"


# -- sleep ---------------------------------------------------------------------------------------------------------


def test_sleep_answers_ok_when_the_timeout_ends_it():
    host = Host(modem())
    assert host.send("AT+SLEEP=1000", wait_ms=900) == ""
    assert host.run(200) == "OK\r\n"


def test_a_byte_wakes_the_modem_and_is_lost():
    host = Host(modem())
    host.send("AT+SLEEP", wait_ms=60_000)
    assert host.send("AT") == "OK\r\nAT_COMMAND_NOT_FOUND\r\n"  # "OK" of the sleep, then "T" alone
    assert host.send("AT") == "OK\r\n"


def test_a_wake_byte_can_be_kept():
    host = Host(modem(sleep_wake_byte_lost=False))
    host.send("AT+SLEEP", wait_ms=1000)
    assert host.send("AT") == "OK\r\nOK\r\n"


def test_lpm_is_stored():
    host = Host(modem())
    assert host.send("AT+LPM=1") == "OK\r\n"
    assert host.send("AT+LPM=?") == "AT+LPM=1\r\nOK\r\n"


# -- faults ------------------------------------------------------------------------------------------------------


def test_silent_modem_answers_nothing_until_the_fault_clears():
    faults = Faults(silent=True)
    host = Host(modem(faults=faults))
    assert host.send("AT", wait_ms=5000) == ""
    faults.silent = False
    assert host.send("AT") == "OK\r\n"


def test_garbage_fault_puts_noise_before_answers_reproducibly():
    def answer(seed: int) -> str:
        return Host(modem(seed=seed, faults=Faults(garbage_probability=1.0))).send("AT")

    noisy = answer(3)
    assert noisy.endswith("OK\r\n") and noisy != "OK\r\n"
    assert "\r" not in noisy[:-4] and "\n" not in noisy[:-4]
    assert noisy == answer(3)


def test_busy_fault_answers_busy_to_join_and_send():
    faults = Faults()
    host = joined_host(faults=faults)
    faults.busy = True
    assert host.send("AT+SEND=2:01") == "AT_BUSY_ERROR\r\n"
    assert host.send("AT+JOIN") == "AT_BUSY_ERROR\r\n"
    assert host.send("AT") == "OK\r\n"


def test_slow_fault_delays_every_answer():
    m = modem(faults=Faults(slow_ms=800), response_ms=10)
    m.write(b"AT\r\n", 0)
    assert m.read(809) == b""
    assert m.read(810) == b"OK\r\n"


def test_injected_garbage_is_printed_at_once():
    m = modem()
    m.inject_garbage(5, 0)
    assert len(m.read(0)) == 5


# -- P2P -------------------------------------------------------------------------------------------------------------


class Ear:
    """A bare air receiver that records what reaches it."""

    name = "ear"

    def __init__(self):
        self.frames: list[tuple[bytes, int]] = []

    def receive_air(self, frame, rssi, snr, config, end_ms):
        self.frames.append((frame, end_ms))


def p2p_host(air: Air | None = None, **kw) -> Host:
    host = Host(modem(air=air, **kw))
    host.send("AT+NWM=0", wait_ms=500)
    return host


def test_psend_answers_ok_then_txp2p_done_after_the_time_on_air_and_the_frame_is_on_the_air():
    air = Air()
    ear = Ear()
    air.register(ear)
    host = p2p_host(air)
    assert host.send("AT+P2P=868000000:7:125:0:8:14") == "OK\r\n"
    start = host.t
    assert host.send("AT+PSEND=C1AABB", wait_ms=20) == "OK\r\n"
    at, out = host.until("+EVT:TXP2P DONE")
    assert out == "+EVT:TXP2P DONE\r\n"
    assert at == start + 10 + math.ceil(P2PConfig().time_on_air_ms(3))
    assert ear.frames == [(bytes.fromhex("C1AABB"), at)]


def test_precv_with_a_timeout_ends_in_receive_timeout():
    host = p2p_host()
    assert host.send("AT+PRECV=3000", wait_ms=2900) == "OK\r\n"
    assert host.run(200) == "+EVT:RXP2P RECEIVE TIMEOUT\r\n"


def test_received_frame_is_printed_with_rssi_snr_and_uppercase_hex():
    host = p2p_host()
    host.send("AT+PRECV=65534")
    host.modem.receive_air(b"\xc1\x01\xab", -45, 9, P2PConfig(), host.t + 5)
    assert host.run(50) == "+EVT:RXP2P:-45:9:C101AB\r\n"


def test_65535_stops_after_one_frame_and_65534_keeps_listening():
    host = p2p_host()
    host.send("AT+PRECV=65535")
    for i in range(2):
        host.modem.receive_air(bytes([i]), -45, 9, P2PConfig(), host.t + 5)
        host.run(20)
    assert host.log[-1][1] == b"+EVT:RXP2P:-45:9:00\r\n"
    assert host.send("AT+PRECV=65534") == "OK\r\n"
    for i in range(2):
        host.modem.receive_air(bytes([i]), -45, 9, P2PConfig(), host.t + 5)
    assert host.run(20) == "+EVT:RXP2P:-45:9:00\r\n+EVT:RXP2P:-45:9:01\r\n"


def test_continuous_reception_refuses_a_new_precv_and_65534_refuses_psend():
    host = p2p_host()
    host.send("AT+PRECV=65534")
    assert host.send("AT+PRECV=1000") == "P2P_RX_ON already\r\nAT_BUSY_ERROR\r\n"
    assert host.send("AT+PSEND=01") == "AT_BUSY_ERROR\r\n"
    assert host.send("AT+PRECV=0") == "OK\r\n"
    assert host.send("AT+PSEND=01", wait_ms=100) == "OK\r\n+EVT:TXP2P DONE\r\n"


def test_65533_listens_and_still_transmits_but_not_while_sending():
    host = p2p_host(Air())
    host.send("AT+PRECV=65533")
    assert host.send("AT+PSEND=0102", wait_ms=0) == ""
    host.modem.receive_air(b"\x09", -45, 9, P2PConfig(), host.t + 15)  # arrives during its own TX: lost
    out = host.run(200)
    assert out == "OK\r\n+EVT:TXP2P DONE\r\n"
    host.modem.receive_air(b"\x09", -45, 9, P2PConfig(), host.t + 5)
    assert host.run(20) == "+EVT:RXP2P:-45:9:09\r\n"


def test_frame_on_another_channel_or_spreading_factor_is_not_received():
    host = p2p_host()
    host.send("AT+PRECV=65534")
    host.modem.receive_air(b"\x01", -45, 9, P2PConfig(sf=9), host.t + 5)
    host.modem.receive_air(b"\x01", -45, 9, P2PConfig(freq_hz=869_000_000), host.t + 5)
    assert host.run(50) == ""


@pytest.mark.parametrize("cmd, status", [
    ("AT+P2P=868:12:125:3:200:14", "AT_PARAM_ERROR"), ("AT+P2P=868000000:13:125:0:8:14", "AT_PARAM_ERROR"),
    ("AT+P2P=868000000:7:300:0:8:14", "AT_ERROR"), ("AT+P2P=868000000:7:125:0:8:23", "AT_PARAM_ERROR"),
    ("AT+PSEND=123", "AT_PARAM_ERROR"), ("AT+PSEND=?", "AT_PARAM_ERROR"), ("AT+PRECV=65536", "AT_PARAM_ERROR"),
    ("AT+PTP=4", "AT_PARAM_ERROR"), ("AT+PSF=13", "AT_PARAM_ERROR"),
])
def test_p2p_parameters_are_range_checked(cmd, status):
    host = p2p_host()
    assert host.send(cmd) == status + "\r\n"


def test_p2p_bandwidth_accepts_khz_and_the_rui3_index():
    host = p2p_host()
    assert host.send("AT+P2P=868100000:9:1:1:10:20") == "OK\r\n"
    assert host.send("AT+P2P=?") == "AT+P2P=868100000:9:250:1:10:20\r\nOK\r\n"


# -- time on air ------------------------------------------------------------------------------------------------


def test_time_on_air_matches_semtech_an1200_13_and_the_reference_table():
    assert lora_time_on_air_ms(13, 9) == pytest.approx(164.864, abs=1e-3)  # AN1200.13 worked example
    assert lora_time_on_air_ms(19, 7) == pytest.approx(51.5, abs=0.1)  # perf_reliability.md §1a
    assert lora_time_on_air_ms(19, 12) == pytest.approx(1318.9, abs=0.1)
    assert REGIONS["EU868"].time_on_air_ms(6, 0) == pytest.approx(1318.9, abs=0.1)
