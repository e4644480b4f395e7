"""Test migrations: the `probe_tags` table, beside `first` in the same database."""
