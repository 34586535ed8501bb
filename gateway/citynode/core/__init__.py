"""The bridge's pure core: dedup, decode, normalise, enrich, alerts, availability, topics and messages.

Nothing in here does I/O: the pipeline takes records (citynode.records) and returns Publications. The dedup
store and the clock are injected.
"""
