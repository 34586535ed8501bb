"""LoRaWAN through the modem: joins that fail and back off, and configuration by downlink."""

import json

from citynode_codec import encode_downlink


def test_refused_joins_send_nothing_back_off_longer_each_time_then_join(board, deploy, run_wake, uplinks):
    board.require_emulation("make the network refuse joins")
    deploy("soil", join_backoff_s=60)
    board.modem.faults.join_failures = 2  # the next two join attempts get no join-accept

    first = run_wake()  # attempt 1 fails: wait 60 s
    assert first.lines("radio: not joined (join_failed_rx_timeout)") and first.sent == []
    assert run_wake(sleep_s=40).lines("radio: not joined (join_backoff)")  # 40 s later: still backing off
    assert run_wake(sleep_s=30).lines("radio: not joined (join_failed_rx_timeout)")  # 70 s: attempt 2 fails
    assert run_wake(sleep_s=100).lines("radio: not joined (join_backoff)")  # 100 s later: now 120 s apart
    assert uplinks.drain() == []  # nothing reached the network meanwhile
    joined = run_wake(sleep_s=30)  # 130 s after attempt 2: attempt 3 is accepted
    assert [result for _, _, result in joined.sent][:1] == ["ok"]
    assert len(board.modem_commands("AT+JOIN=")) == 3
    status = uplinks.wait(1)[0]  # the status that waited goes first (app/cycle.py), with the trouble counted
    assert status.message == "status" and status.data["radio_errors"] == 4


def test_a_set_interval_downlink_is_applied_and_acknowledged(board, deploy, run_wake, uplinks, downlink):
    deploy("soil", sample_interval_s=900)
    command = encode_downlink({"message": "set_interval", "seq": 5, "sample_interval_s": 1800})
    downlink(command["fPort"], bytes(command["bytes"]))
    if board.emulated:
        assert board.lns.wait_handled(1)
    first = run_wake()  # the downlink arrives in RX1 of this wake's uplink
    assert first.lines("downlink 20:") == [f"downlink 20:{bytes(command['bytes']).hex()} -> set_interval applied"]
    config = json.loads(board.mpremote("cat", ":config.json").stdout)
    assert config["sample_interval_s"] == 1800
    second = run_wake()
    assert second.sent[0][2] == "ok"
    ack = uplinks.wait(1, message="downlink_ack")[0]
    assert (ack.data["seq"], ack.data["command"], ack.data["result"]) == (5, "set_interval", "applied")
    if second.sleep_ms is not None:
        assert round(second.sleep_ms / 60000) == 30  # the new schedule
