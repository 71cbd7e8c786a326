"""Every hole an outside probe found in a keyed `shoal server` with a real copy, reproduced as it was found
and kept closed (issue 22): over real sockets and HTTP, with boto3's and botocore's own signer."""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import httpx
import psutil
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from helpers import free_port, server_process

from shoal.engines.translate import TgiLimits
from shoal.errors import ApiError
from shoal.protocol.requests import GenerateRequest
from shoal.protocol.rules import check_parameters
from shoal.security.keys import Scope, append_key, new_key

BODY = {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 2}}
HALF = {"NumberOfCpuCoresRequired": 0.5, "MinMemoryRequiredInMb": 512}
FAULTY = f"{sys.executable} {Path(__file__).parent / 'faulty_engine.py'} --host {{host}} --port {{port}}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    admin, invoke = new_key("ops", Scope.ADMIN), new_key("app", Scope.INVOKE)
    records = [{**k.model_dump(mode="json"), "secret": k.secret.get_secret_value()} for k in (admin, invoke)]
    return {"admin": admin, "invoke": invoke, "json": json.dumps(records)}


def secret(key) -> str:  # type: ignore[no-untyped-def]
    return key.secret.get_secret_value()


@pytest.fixture(scope="module")
def server(keys: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Keys in the server's environment (as SHOAL_API_KEYS), a secret of the operator's there too, short
    timeouts, a real copy (`gemma`) and a stand-in copy (`stand-in`, engine `command`)."""
    state = tmp_path_factory.mktemp("hardened")
    env = {"SHOAL_API_KEYS": keys["json"], "OPERATOR_PASSWORD": "hunter2", "PLAIN_SETTING": "kept"}
    with server_process(state, "--idle-timeout", "2", "--body-timeout", "2", "--allow-command-engine",
                        "--allow-env", "OPENAI_API_KEY", env=env) as url:
        admin = {"Authorization": f"Bearer {secret(keys['admin'])}"}
        httpx.post(f"{url}/api/endpoints", json={"EndpointName": "hard"}, headers=admin).raise_for_status()
        for spec in ({"InferenceComponentName": "gemma", "ModelId": "gemma-3-270m",
                      "Environment": {"SM_NUM_GPUS": "0", "OPENAI_API_KEY": "sk-component-secret"}},
                     {"InferenceComponentName": "stand-in", "ModelId": "stand-in", "Engine": "command",
                      "EngineCommand": FAULTY}):
            httpx.post(f"{url}/api/inference-components", headers=admin, timeout=60,
                       json={**spec, "EndpointName": "hard", "ComputeResourceRequirements": HALF}).raise_for_status()
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "copies never came into service"
            time.sleep(0.2)
        yield url, state


def _admin(keys: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(keys['admin'])}"}


def _raw(url: str, request: bytes, wait_s: float = 5, first: bool = False) -> bytes:
    """Send `request` as bytes on a new connection; what the server answers until it closes or `wait_s`
    (`first`: only its first chunk)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(request)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if first:
                    break
        except TimeoutError:
            pass
    return answer


def _copy(url: str, keys: dict, component: str) -> dict:
    return httpx.get(f"{url}/api/inference-components/{component}", headers=_admin(keys)).json()["copies"][0]


# 1. a model reference in the environment, a chat template file ----------------------------------------------
@pytest.mark.parametrize(("env", "words"), [
    ({"MODEL_ID": "/outside/x.gguf"}, "MODEL_ID='/outside/x.gguf' names another model"),
    ({"HF_MODEL_ID": "org/other"}, "HF_MODEL_ID='org/other' names another model"),
    ({"CHAT_TEMPLATE": "/etc/passwd"}, "CHAT_TEMPLATE '/etc/passwd' is a file outside the server's model"),
])
def test_the_model_and_template_a_copy_reads_are_the_checked_ones(server: tuple[str, Path], keys: dict,
                                                                  env: dict, words: str) -> None:
    url, _ = server
    answer = httpx.post(f"{url}/api/inference-components", headers=_admin(keys), json={
        "InferenceComponentName": "bypass", "EndpointName": "hard", "ModelId": "gemma-3-270m", "Environment": env})
    assert answer.status_code == 400 and words in answer.json()["error"]


# 2. an unknown SigV4 key is refused from its headers, before its body is read ---------------------------------
def test_an_unknown_signing_key_is_refused_before_any_body_arrives(server: tuple[str, Path]) -> None:
    url, _ = server
    head = (b"POST /endpoints/hard/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 16000000\r\nX-Amz-Date: 20261206T000000Z\r\n"
            b"Authorization: AWS4-HMAC-SHA256 Credential=SHOALNOSUCHKEY00/20261206/us-east-1/sagemaker/aws4_request, "
            b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64 + b"\r\n\r\n")
    started = time.monotonic()
    answer = _raw(url, head, first=True)  # no body is ever sent
    assert answer.startswith(b"HTTP/1.1 403") and b"UnrecognizedClientException" in answer
    assert time.monotonic() - started < 1.5  # answered at once, not after the body timeout


# 4. idle, trickling and slow-body connections do not stay ---------------------------------------------------------
def test_idle_and_trickling_connections_are_closed_and_slow_bodies_time_out(server: tuple[str, Path],
                                                                            keys: dict) -> None:
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:  # half a request head, then nothing
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(10)
        started = time.monotonic()
        assert s.recv(100) == b"" and time.monotonic() - started < 5  # closed at the idle timeout (2 s)
    head = (f"POST /api/endpoints HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
            f"Authorization: Bearer {secret(keys['admin'])}\r\n\r\n{{").encode()
    assert _raw(url, head, wait_s=8).startswith(b"HTTP/1.1 408")  # 1 of 100 bytes in 2 s


# 5. copies inherit none of the server's secrets ---------------------------------------------------------------------
def test_a_copy_gets_its_component_environment_not_the_servers_secrets(server: tuple[str, Path], keys: dict) -> None:
    url, _ = server
    env = psutil.Process(_copy(url, keys, "gemma")["pid"]).environ()
    assert "SHOAL_API_KEYS" not in env and "OPERATOR_PASSWORD" not in env
    assert env["PLAIN_SETTING"] == "kept" and env["OPENAI_API_KEY"] == "sk-component-secret"
    assert secret(keys["admin"]) not in json.dumps(env)


def test_a_copy_answers_only_its_gateway(server: tuple[str, Path], keys: dict) -> None:
    """A copy's port refuses anyone without the copy's credential (any local user could reach it), its health
    route aside; the gateway, which holds the credential, is answered."""
    url, _ = server
    address = _copy(url, keys, "gemma")["address"]
    direct = httpx.post(f"{address}/generate", json={"inputs": "x", "parameters": {"max_new_tokens": 2}})
    assert (direct.status_code, direct.json()["error_type"]) == (401, "unauthorized")
    forged = httpx.get(f"{address}/metrics", headers={"Authorization": f"Bearer {secret(keys['admin'])}"})
    assert forged.status_code == 401
    assert httpx.get(f"{address}/health").status_code == 200
    through = httpx.post(f"{url}/endpoints/hard/invocations", json=BODY,
                         headers={**_admin(keys), "X-Amzn-SageMaker-Inference-Component": "gemma"})
    assert through.status_code == 200, through.text


def test_a_huge_tokenize_neither_stalls_the_copy_nor_gets_it_restarted(server: tuple[str, Path], keys: dict) -> None:
    """Tokenizing happens off the copy's event loop: health checks keep answering while 1.9 MB is tokenized
    (what the gateway would send it; the copy's body limit is TGI's 2 MB payload limit), and it is not restarted."""
    url, _ = server
    before = _copy(url, keys, "gemma")
    gateway = {"Authorization": f"Bearer {psutil.Process(before['pid']).environ()['SHOAL_COPY_TOKEN']}"}
    big = {"inputs": "The quick brown fox jumps over the lazy dog. " * 42_000}
    with cf.ThreadPoolExecutor(1) as pool:
        tokenized = pool.submit(httpx.post, f"{before['address']}/tokenize", json=big, timeout=120, headers=gateway)
        slowest = 0.0
        while not tokenized.done():
            started = time.monotonic()
            assert httpx.get(f"{before['address']}/health", timeout=5).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
    assert tokenized.result().status_code == 200 and len(tokenized.result().json()) > 400_000
    assert slowest < 2.5  # half the supervisor's probe timeout (5 s); on a quiet machine a few ms
    too_big = httpx.post(f"{before['address']}/tokenize", json={"inputs": "x" * 2_100_000}, headers=gateway)
    assert too_big.status_code == 413
    after = _copy(url, keys, "gemma")
    assert (after["id"], after["restarts"]) == (before["id"], before["restarts"])


# 7. SigV4 signs this body, for this service --------------------------------------------------------------------
def _signed(url: str, key, body: bytes, service: str = "sagemaker") -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers signing `body` with `key`, its hash in a signed x-amz-content-sha256 header (as S3 clients send)."""
    request = AWSRequest("POST", f"{url}/endpoints/hard/invocations", data=body,
                         headers={"Content-Type": "application/json", "X-Amzn-SageMaker-Inference-Component": "gemma",
                                  "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(key.access_key_id, secret(key)), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_a_signature_holds_only_for_its_own_body_and_service(server: tuple[str, Path], keys: dict) -> None:
    url, _ = server
    body = json.dumps(BODY).encode()
    good = _signed(url, keys["invoke"], body)
    assert "x-amz-content-sha256" in good["Authorization"]  # signed
    assert httpx.post(f"{url}/endpoints/hard/invocations", content=body, headers=good).status_code == 200
    other = json.dumps({**BODY, "inputs": "Something else entirely"}).encode()
    forged = httpx.post(f"{url}/endpoints/hard/invocations", content=other, headers=good)
    assert forged.status_code == 403 and forged.json()["__type"] == "InvalidSignatureException"
    for service in ("s3", "execute-api"):
        wrong = httpx.post(f"{url}/endpoints/hard/invocations", content=body,
                           headers=_signed(url, keys["invoke"], body, service=service))
        assert wrong.status_code == 403 and "scoped to correct service" in wrong.json()["message"]


# 8. the environment a component may set is a list ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["GGML_BACKEND_PATH", "CUDA_INJECTION64_PATH", "OMP_TOOL_LIBRARIES", "OPENSSL_MODULES",
                                  "TRUST_REMOTE_CODE", "HF_ENDPOINT", "HTTPS_PROXY", " LD_PRELOAD", "A=B"])
def test_variables_outside_the_list_are_refused(server: tuple[str, Path], keys: dict, name: str) -> None:
    url, _ = server
    answer = httpx.post(f"{url}/api/inference-components", headers=_admin(keys), json={
        "InferenceComponentName": "envy", "EndpointName": "hard", "ModelId": "gemma-3-270m",
        "Environment": {name: "x"}})
    assert answer.status_code == 400 and ("may not set" in answer.json()["error"] or "names must be" in
                                          answer.json()["error"])


# 9. odd credentials are refusals, not 500s; a request cannot write log lines -------------------------------------
def test_odd_credentials_are_refused_not_crashing_and_paths_cannot_forge_log_lines(server: tuple[str, Path]) -> None:
    url, state = server
    bearer = _raw(url, b"GET /api/endpoints HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xe9t\xe9\r\n\r\n")
    assert bearer.startswith(b"HTTP/1.1 401")
    sigv4 = _raw(url, "POST /endpoints/hard/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                      "Authorization: AWS4-HMAC-SHA256 Credential=SHÖAL/20261206/us-east-1/sagemaker/aws4_request, "
                      "SignedHeaders=host, Signature=00\r\n\r\n".encode())
    assert sigv4.startswith(b"HTTP/1.1 403")
    _raw(url, b"GET /x%0A2026-01-01%20CRITICAL%20forged%1B[31m HTTP/1.1\r\nHost: x\r\n\r\n")
    log = next(state.glob("server-*.log")).read_text()
    assert "\nCRITICAL forged" not in log.replace("\\n", "") and "\x1b[31m" not in log


# 11. secrets at rest -------------------------------------------------------------------------------------------------
def test_state_and_keys_are_private_and_describe_redacts_secrets(server: tuple[str, Path], keys: dict,
                                                                 tmp_path: Path) -> None:
    url, state = server
    assert stat.S_IMODE((state / "state.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    described = httpx.get(f"{url}/api/inference-components/gemma", headers=_admin(keys)).json()
    assert described["spec"]["env"]["OPENAI_API_KEY"] == "***"
    keyfile = tmp_path / "keys.json"
    keyfile.write_text("[]")
    keyfile.chmod(0o644)
    append_key(keyfile, new_key("x", Scope.INVOKE))
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600


# SageMaker's runtime as AWS answers it --------------------------------------------------------------------------------
def test_sagemaker_variant_attributes_and_async_as_aws_answers(server: tuple[str, Path], keys: dict) -> None:
    url, _ = server
    key = keys["invoke"]
    runtime = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id=key.access_key_id, aws_secret_access_key=secret(key),
                           config=botocore.config.Config(retries={"max_attempts": 0}))
    invoke = {"EndpointName": "hard", "InferenceComponentName": "stand-in", "ContentType": "application/json",
              "Body": json.dumps(BODY)}
    answer = runtime.invoke_endpoint(**invoke, CustomAttributes="trace=42", TargetVariant="AllTraffic")
    assert answer["CustomAttributes"] == "trace=42"  # to the copy and back (the stand-in echoes it)
    with pytest.raises(runtime.exceptions.ValidationError, match="Target variant Bogus not found"):
        runtime.invoke_endpoint(**invoke, TargetVariant="Bogus")
    with pytest.raises(runtime.exceptions.ValidationError, match="not an asynchronous inference endpoint"):
        runtime.invoke_endpoint_async(EndpointName="hard", InputLocation="s3://bucket/input.json")


def test_a_copy_that_leaves_takes_its_metric_labels_with_it(server: tuple[str, Path], keys: dict) -> None:
    url, _ = server
    admin = _admin(keys)
    copy = _copy(url, keys, "stand-in")["id"]
    httpx.post(f"{url}/generate", headers=admin, json=BODY)  # the TGI routes need one default: there are two
    httpx.post(f"{url}/endpoints/hard/invocations", json=BODY,
               headers={**admin, "X-Amzn-SageMaker-Inference-Component": "stand-in"}).raise_for_status()
    served = labelled_metric_with(url, admin, "shoal_gateway_copy_requests_total")
    assert any(f'copy="{copy}"' in labels for labels in served)
    httpx.patch(f"{url}/api/inference-components/stand-in", json={"CopyCount": 0}, headers=admin,
                timeout=60).raise_for_status()
    deadline = time.monotonic() + 30
    while any(f'copy="{copy}"' in labels for labels in labelled_metric_with(url, admin,
                                                                          "shoal_gateway_copy_requests_total")):
        assert time.monotonic() < deadline, "the copy's series stayed"
        time.sleep(0.2)


def labelled_metric_with(url: str, headers: dict[str, str], name: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{url}/metrics", headers=headers).text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            out[labels] = float(value)
    return out


# 12. TLS ----------------------------------------------------------------------------------------------------------
def test_tls_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    port = free_port()
    log = (tmp_path / "tls.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "server", "--port", str(port), "--state-dir",
                             str(tmp_path / "state"), "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"https://127.0.0.1:{port}/live", verify=context).text == "ok"
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "tls.log").read_text()
                time.sleep(0.2)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/live")  # plain HTTP is not spoken
    finally:
        proc.terminate()
        proc.wait(30)


# 10. NaN and infinities --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b'{"inputs": "x", "parameters": {"temperature": NaN}}',
                                  b'{"inputs": "x", "parameters": {"repetition_penalty": Infinity}}',
                                  b'{"inputs": "x", "parameters": {"temperature": 1e999}}'])
def test_nan_and_infinity_are_refused_by_the_gateway_and_the_rules(server: tuple[str, Path], keys: dict,
                                                                   body: bytes) -> None:
    url, _ = server
    answer = httpx.post(f"{url}/endpoints/hard/invocations", content=body, headers={
        **_admin(keys), "Content-Type": "application/json", "X-Amzn-SageMaker-Inference-Component": "gemma"})
    assert answer.status_code == 424 and answer.json()["OriginalStatusCode"] == 422  # the container would refuse it
    parameters = GenerateRequest.model_validate_json(body).parameters  # Python's JSON readers take them
    with pytest.raises(ApiError, match="must be a finite number") as refused:
        check_parameters(parameters, TgiLimits(1024), stream=False)
    assert refused.value.status == 422
