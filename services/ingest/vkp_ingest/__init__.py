"""The ingest service of the VKP hub."""
