"""Type aliases for gRPC code written against grpc.aio."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

#: The context of a call, as servicers and interceptors receive it.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
#: A method handler of any message types.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
