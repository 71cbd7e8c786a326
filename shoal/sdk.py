"""Python SDK, in the shape of SageMaker's: ResourceRequirements, Model(...).deploy(...) -> Predictor.

    from shoal.sdk import Model, ResourceRequirements
    resources = ResourceRequirements(requests={"copies": 2, "num_accelerators": 0, "num_cpus": 1,
                                               "memory": 1024})
    predictor = Model(model_id="gemma-3-270m", env={"MAX_TOTAL_TOKENS": "2048"}).deploy(
        endpoint_name="demo", instance_type="local", initial_instance_count=1, resources=resources)
    predictor.predict({"inputs": "Hello", "parameters": {"max_new_tokens": 20}})[0]["generated_text"]
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from shoal.errors import ShoalError

DEFAULT_URL = os.environ.get("SHOAL_URL", "http://127.0.0.1:8000")
COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"


class ShoalApiError(ShoalError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Session:
    """A connection to a shoal server; `api_key` (default: SHOAL_API_KEY) is sent as a Bearer token."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 300.0, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        key = api_key or os.environ.get("SHOAL_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else None
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        try:
            response = self.http.request(method, path, content=None if body is None else orjson.dumps(body),
                                         headers={"Content-Type": "application/json", **(headers or {})})
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        if response.status_code >= 400:
            raise ShoalApiError(response.status_code, _message(response))
        return response.json() if response.content else None

    def unreachable(self, exc: Exception) -> ShoalError:
        return ShoalError(f"cannot reach the shoal server at {self.url} ({exc}); start one with `shoal server`")

    def endpoints(self) -> list[dict[str, Any]]:
        return self.call("GET", "/api/endpoints")

    def endpoint(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/api/endpoints/{name}")

    def components(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self.call("GET", "/api/inference-components" + (f"?endpoint={endpoint}" if endpoint else ""))

    def component(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/api/inference-components/{name}")


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text
    return data.get("error") or data.get("message") or response.text


class ResourceRequirements:
    """What each copy needs (`requests`) and may use at most (`limits`); `copies` is how many."""

    def __init__(self, requests: dict[str, float], limits: dict[str, float] | None = None) -> None:
        unknown = set(requests) - {"copies", "num_accelerators", "num_cpus", "memory"}
        if unknown:
            raise ValueError(f"unknown resource requests: {sorted(unknown)}")
        self.copies = int(requests.get("copies", 1))
        self.compute: dict[str, Any] = {
            "NumberOfAcceleratorDevicesRequired": int(requests.get("num_accelerators", 0)),
            "NumberOfCpuCoresRequired": float(requests.get("num_cpus", 1)),
            "MinMemoryRequiredInMb": int(requests.get("memory", 1024)),
        }
        if limits and "memory" in limits:
            self.compute["MaxMemoryRequiredInMb"] = int(limits["memory"])


def component_name_for(model_id: str) -> str:
    """A SageMaker-valid component name from a model id ("google/gemma-3-270m" -> "gemma-3-270m")."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", model_id.rsplit("/", 1)[-1]).strip("-")
    return (base or "model")[:63]


class Model:
    """A model to deploy; `engine` picks what each copy runs: shoal (built-in), llama-server, vllm, sglang,
    tgi, or command (with `engine_command`, on a server started with --allow-command-engine). With
    `adapter_of`, `model_id` is a LoRA adapter (a GGUF file, or one shoal ships) that every copy of that
    component serves: an adapter inference component, invoked by its own name."""

    def __init__(self, model_id: str, env: dict[str, str] | None = None, name: str | None = None,
                 session: Session | None = None, engine: str = "shoal", engine_command: str | None = None,
                 engine_protocol: str | None = None, adapter_of: str | None = None) -> None:
        self.model_id = model_id
        self.env = dict(env or {})
        self.name = name or component_name_for(model_id)
        self.session = session or Session()
        options = {"command": engine_command, "protocol": engine_protocol}
        self.engine = {"Engine": engine, "EngineOptions": {k: v for k, v in options.items() if v is not None}}
        self.adapter_of = adapter_of

    def deploy(self, endpoint_name: str, instance_type: str = "local", initial_instance_count: int = 1,
               resources: ResourceRequirements | None = None, container_startup_health_check_timeout: int = 600,
               routing_strategy: str = "LEAST_OUTSTANDING_REQUESTS", inference_component_name: str | None = None,
               wait: bool = True) -> Predictor:
        """Create the endpoint if it does not exist, add this model to it, and wait until it serves."""
        resources = resources or ResourceRequirements(requests={"copies": 1})
        try:
            self.session.call("POST", "/api/endpoints", {
                "EndpointName": endpoint_name, "InstanceType": instance_type,
                "InitialInstanceCount": initial_instance_count, "RoutingStrategy": routing_strategy})
        except ShoalApiError as exc:
            if exc.status != 409:  # an existing endpoint is shared by several components
                raise
        name = inference_component_name or self.name
        spec = {"InferenceComponentName": name, "EndpointName": endpoint_name, "ModelId": self.model_id}
        if self.adapter_of:
            spec["BaseInferenceComponentName"] = self.adapter_of
        else:
            spec.update({"Environment": self.env, "ComputeResourceRequirements": resources.compute,
                         "ContainerStartupHealthCheckTimeoutInSeconds": container_startup_health_check_timeout,
                         "CopyCount": resources.copies, **{k: v for k, v in self.engine.items() if v is not None}})
        self.session.call("POST", "/api/inference-components", spec)
        predictor = Predictor(endpoint_name, name, self.session)
        if wait:
            predictor.wait(timeout_s=container_startup_health_check_timeout + 30)
        return predictor


class Predictor:
    def __init__(self, endpoint_name: str, component_name: str | None = None, session: Session | None = None) -> None:
        self.endpoint_name = endpoint_name
        self.component_name = component_name
        self.session = session or Session()

    @property
    def _headers(self) -> dict[str, str]:
        return {COMPONENT_HEADER: self.component_name} if self.component_name else {}

    def predict(self, data: dict[str, Any]) -> Any:
        return self.session.call("POST", f"/endpoints/{self.endpoint_name}/invocations", data, self._headers)

    def predict_stream(self, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """TGI's stream events (`{"token": ..., "generated_text": ...}`), one per token."""
        try:
            yield from self._stream(data)
        except httpx.TransportError as exc:
            raise self.session.unreachable(exc) from None

    def _stream(self, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.session.http.stream("POST", f"/endpoints/{self.endpoint_name}/invocations",
                                      content=orjson.dumps({**data, "stream": True}),
                                      headers={"Content-Type": "application/json", **self._headers}) as response:
            if response.status_code >= 400:
                response.read()
                raise ShoalApiError(response.status_code, _message(response))
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield orjson.loads(line[5:])

    def describe(self) -> dict[str, Any]:
        return self.session.component(self._require_component())

    def wait(self, timeout_s: float = 600) -> dict[str, Any]:
        """Until the component is InService; raises if it fails or takes longer than `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.describe()
            if view["status"] == "InService":
                return view
            if view["status"] == "Failed":
                raise ShoalError(f"inference component {self.component_name} failed: {view['reason']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.component_name} is still {view['status']} after {timeout_s}s")
            time.sleep(0.25)

    def update(self, copies: int | None = None, env: dict[str, str] | None = None, wait: bool = True) -> dict:
        body: dict[str, Any] = {}
        if copies is not None:
            body["CopyCount"] = copies
        if env is not None:
            body["Environment"] = env
        self.session.call("PATCH", f"/api/inference-components/{self._require_component()}", body)
        return self.wait() if wait else self.describe()

    def autoscale(self, min_copies: int | None, max_copies: int | None = None, target_concurrency: float | None = None,
                  target_invocations: float | None = None, scale_out_cooldown: int = 300, scale_in_cooldown: int = 300,
                  cold_start_timeout: float = 300.0) -> dict[str, Any] | None:
        """Autoscale the component's copies between `min_copies` (0: scale to zero; requests then wait for a copy
        to start) and `max_copies`, tracking requests per copy (in flight + queued) and/or invocations per copy
        per minute; `autoscale(None)` stops autoscaling. Returns the policy, copies and activities."""
        path = f"/api/inference-components/{self._require_component()}/autoscaling"
        if min_copies is None:
            self.session.call("DELETE", path)
            return None
        return self.session.call("PUT", path, {
            "MinCapacity": min_copies, "MaxCapacity": max_copies, "TargetConcurrency": target_concurrency,
            "TargetInvocationsPerCopyPerMinute": target_invocations, "ScaleOutCooldown": scale_out_cooldown,
            "ScaleInCooldown": scale_in_cooldown, "ColdStartTimeout": cold_start_timeout})

    def autoscaling(self) -> dict[str, Any]:
        """The autoscaling policy, desired and current copies, and scaling activities (newest first)."""
        return self.session.call("GET", f"/api/inference-components/{self._require_component()}/autoscaling")

    def delete_inference_component(self) -> None:
        self.session.call("DELETE", f"/api/inference-components/{self._require_component()}")

    def delete_endpoint(self, cascade: bool = False) -> None:
        self.session.call("DELETE", f"/api/endpoints/{self.endpoint_name}" + ("?cascade=true" if cascade else ""))

    def _require_component(self) -> str:
        if not self.component_name:
            raise ShoalError("this predictor has no inference component name")
        return self.component_name
