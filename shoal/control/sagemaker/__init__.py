"""SageMaker's control plane on the server's port (JSON 1.1, `X-Amz-Target: SageMaker.<Operation>`), over the
same controller as shoal's own API: models, endpoint configurations, endpoints and inference components.

Layout: protocol.py (the JSON 1.1 door, errors, callers), validate.py (AWS's input constraints from botocore's
model), shapes.py (the request shapes read), images.py (image URI → engine), containers.py (containers →
components), plane.py (what operations share), views.py (Describe / List answers), operations.py (one
function per operation).
"""
from __future__ import annotations

from shoal.control.sagemaker.operations import OPERATIONS, call
from shoal.control.sagemaker.plane import SageMakerPlane
from shoal.control.sagemaker.protocol import AwsError, AwsJsonDoor, Service

TARGET_PREFIX = "SageMaker"


def sagemaker_service(plane: SageMakerPlane) -> Service:
    return lambda operation, body, caller: call(plane, operation, body, caller)


__all__ = ["OPERATIONS", "TARGET_PREFIX", "AwsError", "AwsJsonDoor", "SageMakerPlane", "Service", "sagemaker_service"]
