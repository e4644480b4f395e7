"""The registry's domain: its resources, the checks on them and the access decision. Pure: no
gRPC, protobuf or database here."""
