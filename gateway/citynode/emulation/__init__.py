"""Emulators for CI without boards or radios: a RUI3 RAK3172 modem, the LoRa air, a P2P receiver on a
pseudo-terminal and a LoRaWAN network server that publishes ChirpStack v4 or The Things Stack v3 MQTT messages."""
