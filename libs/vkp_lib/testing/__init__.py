"""Test support shared by every test suite of the hub: synthetic test data, the leak guard that
fails a test when health data reaches logs or spans, an OTLP collector, service processes, and
the hub the cross-service tests start (the EPJ simulator, the seeded registry, audit)."""
