"""The maritime picture: AIS NMEA 0183 decoding, vessel tracks as STIX 2.1, and alert rules.

Pure: no store, no network. ``nmea`` reads sentences (with pyais) and counts what it
cannot use; ``vessels`` turns reports into STIX objects (docs/maritime.md); ``rules``
raises alerts from positions as they stream. ``services/ais.py`` ties them to a node.
"""
