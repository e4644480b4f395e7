"""Test migrations: the `probe_notes` table."""
