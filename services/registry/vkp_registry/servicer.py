"""gRPC servicer of vkp.registry.v1.RegistryService: thin, proto <-> domain.

Every RPC still answers UNIMPLEMENTED (the generated base class) until its step fills it in.
"""

from __future__ import annotations

from vkp.registry.v1 import registry_pb2_grpc


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    pass
