"""The audit service's domain: records, their canonical form and hash chain, checkpoints and the
verification of a chain (chain.py, model.py), who may read a municipality's log and what a
patient's own log shows (access_log.py), and the service's ErrorInfo reasons (reasons.py).
Pure: no gRPC, protobuf or database here."""
