"""AWS event-stream framing, as `invoke_endpoint_with_response_stream` answers and boto3 decodes.

A message: total length, headers length, prelude CRC32, headers, payload, message CRC32 (big endian).
"""
from __future__ import annotations

import zlib

import orjson

_STRING = 7


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + bytes([_STRING]) + len(v).to_bytes(2, "big") + v


def _message(headers: bytes, payload: bytes) -> bytes:
    total = 12 + len(headers) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    body = prelude + headers + payload
    return body + zlib.crc32(body).to_bytes(4, "big")


_PAYLOAD_PART = (_header(":event-type", "PayloadPart") + _header(":content-type", "application/octet-stream")
                 + _header(":message-type", "event"))


def payload_part(data: bytes) -> bytes:
    return _message(_PAYLOAD_PART, data)


def model_stream_error(message: str, code: str = "ModelStreamError") -> bytes:
    headers = (_header(":exception-type", "ModelStreamError") + _header(":content-type", "application/json")
               + _header(":message-type", "exception"))
    return _message(headers, orjson.dumps({"Message": message, "ErrorCode": code}))
