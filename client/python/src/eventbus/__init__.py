"""Python client for eventbus, the gRPC event bus for workflow engines.

The wire types and gRPC stubs are generated from ``proto/eventbus/v1`` into
``eventbus.v1`` (``cloudevent_pb2``, ``event_bus_service_pb2_grpc``, ...); do not edit
them by hand, regenerate with ``codegen`` from ``tests/lib/codegen.sh``. Helpers built on
them live next to this module.
"""
