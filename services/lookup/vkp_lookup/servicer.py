"""gRPC servicer of vkp.lookup.v1.LookupService: thin, proto <-> domain.

Every RPC still answers UNIMPLEMENTED (the generated base class) until its step fills it in.
"""

from __future__ import annotations

from vkp.lookup.v1 import lookup_pb2_grpc


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    pass
