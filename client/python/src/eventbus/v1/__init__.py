"""Generated protobuf messages and gRPC stubs for the ``eventbus.v1`` package.

Every other module in this package is generated from ``proto/eventbus/v1`` by
``buf generate``; this file is the only hand-written one.
"""
