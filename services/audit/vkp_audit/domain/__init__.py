"""The audit service's domain: records, their canonical form and hash chain, checkpoints and the
verification of a chain. Pure: no gRPC, protobuf or database here."""
