"""gRPC servicer of vkp.ingest.v1.IngestService: thin, proto <-> domain.

Every RPC still answers UNIMPLEMENTED (the generated base class) until its step fills it in.
"""

from __future__ import annotations

from vkp.ingest.v1 import ingest_pb2_grpc


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    pass
