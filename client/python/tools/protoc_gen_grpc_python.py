"""protoc plugin that writes gRPC Python stubs (``*_pb2_grpc.py``) with grpcio-tools.

buf has no built-in ``grpc_python`` generator, and grpcio-tools ships its gRPC generator only
linked into its bundled protoc, not as a ``protoc-gen-*`` program. This plugin bridges the two:
it reads the CodeGeneratorRequest that buf sends on stdin, hands the request's file descriptors
to the bundled protoc (``--descriptor_set_in ... --grpc_python_out``) and answers on stdout with
the files that produced. The output is byte for byte what ``python -m grpc_tools.protoc
--grpc_python_out`` writes, except that files declaring no service get no (empty)
``_pb2_grpc.py`` module.

Run it with the interpreter that has grpcio-tools installed (see buf.gen.yaml):

    local: [.venv/bin/python, client/python/tools/protoc_gen_grpc_python.py]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Returns the gRPC stubs for the request's files that declare a service."""
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL,
    )
    with_services = {f.name for f in request.proto_file if f.service}
    targets = [name for name in request.file_to_generate if name in with_services]
    if not targets:
        return response

    with tempfile.TemporaryDirectory(prefix="protoc-gen-grpc-python-") as tmp:
        descriptors = Path(tmp, "descriptors.binpb")
        # proto_file holds every file of the request, imports first: a complete set.
        descriptors.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString()
        )
        out = Path(tmp, "out")
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptors}",
            f"--grpc_python_out={out}",
        ]
        if request.parameter:
            args.append(f"--grpc_python_opt={request.parameter}")
        status = protoc.main(args + targets)
        if status != 0:
            response.error = f"grpc_tools.protoc --grpc_python_out exited with status {status}"
            return response
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            response.file.add(
                name=path.relative_to(out).as_posix(),
                content=path.read_text(encoding="utf-8"),
            )
    return response


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
