"""Ingest's pure rules and types: no gRPC, no protobuf messages, no database."""
