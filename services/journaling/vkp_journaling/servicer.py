"""gRPC servicer of vkp.journaling.v1.JournalingService: thin, proto <-> domain.

Every RPC still answers UNIMPLEMENTED (the generated base class) until its step fills it in.
"""

from __future__ import annotations

from vkp.journaling.v1 import journaling_pb2_grpc


class JournalingServicer(journaling_pb2_grpc.JournalingServiceServicer):
    pass
