"""The seed's own `sagemaker` SDK v2 code, cells 2-6, against a real `shoal server` with real engines.

Only cell 1 changes (README, "Bring your SageMaker code"): shoal's address instead of AWS's, no IAM role
lookup, and the one line that skips the SDK's S3 bucket check. In cells 2-6 only values that cannot run on
this machine change: the model (gemma-3-270m instead of Llama 2 13B), its token limits, the copies' sizes
and the instance type (ml.g5.12xlarge: the local runtime pins copies to the cores this machine has). The
chat-template line cannot download a tokenizer here, so a literal Gemma prompt replaces it; the benchmark
of cell 5 (k6, an external tool) is one request through boto3's runtime client instead.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers import server_process

sagemaker = pytest.importorskip("sagemaker")


@pytest.fixture
def undo_cell_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cell 1 sets process-wide things (environment, boto3's default session, one SDK method): undone after."""
    for name in ("AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(sagemaker.Session, "default_bucket", sagemaker.Session.default_bucket)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


@pytest.mark.slow
def test_the_seeds_cells_run_unchanged(tmp_path: Path, undo_cell_one: None) -> None:
    with server_process(tmp_path) as shoal_url:
        # -- 1. Setup development environment: the cell that changes (README's, with this server's address) -------
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER"] = os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = shoal_url
        boto3.setup_default_session(region_name="us-east-1", aws_access_key_id="shoal", aws_secret_access_key="shoal")
        sagemaker.Session.default_bucket = lambda self: "shoal"  # the SDK checks an S3 bucket before deploying
        sess = sagemaker.Session()
        role = "arn:aws:iam::000000000000:role/shoal"
        print(f"sagemaker role arn: {role}")
        print(f"sagemaker session region: {sess.boto_region_name}")

        # -- 2. Retrieve the new Hugging Face LLM DLC ------------------------------------------------------------
        from sagemaker.huggingface import get_huggingface_llm_image_uri

        # retrieve the llm image uri
        llm_image = get_huggingface_llm_image_uri(
          "huggingface",
          version="1.1.0"
        )

        # print ecr image uri
        print(f"llm image uri: {llm_image}")

        # -- 3. Configure Hardware requirements per replica -------------------------------------------------------
        from sagemaker.compute_resource_requirements.resource_requirements import ResourceRequirements

        llama2_13b_resource_config = ResourceRequirements(
            requests = {
                "copies": 2, # Number of replicas
                "num_accelerators": 1, # Number of GPUs
                "num_cpus": 1,  # Number of CPU cores  96 // num_replica - more for management
                "memory": 1024,  # Minimum memory in MB 1152 // num_replica - more for management
            },
        )

        # -- 4. Deploy Llama 2 to Amazon SageMaker ---------------------------------------------------------------------
        import json
        import uuid

        from sagemaker.enums import EndpointType
        from sagemaker.huggingface import HuggingFaceModel

        # sagemaker config
        instance_type = "ml.g5.12xlarge"
        health_check_timeout = 300

        # Define Model and Endpoint configuration parameter
        config = {
          'HF_MODEL_ID': "gemma-3-270m", # model_id from hf.co/models
          'SM_NUM_GPUS': json.dumps(1), # Number of GPU used per replica
          'MAX_INPUT_LENGTH': json.dumps(256),  # Max length of input text
          'MAX_TOTAL_TOKENS': json.dumps(512),  # Max length of the generation (including input text)
          'MAX_BATCH_TOTAL_TOKENS': json.dumps(2048),  # Limits the number of tokens that can be processed in parallel during the generation  # noqa: E501 (the seed's line)
          'HUGGING_FACE_HUB_TOKEN': "hf_not_a_real_token" # uncomment when using a private model
          # 'HUGGING_FACE_HUB_TOKEN': "<REPLACE WITH YOUR TOKEN>" # uncomment when using a private model
          # ,'HF_MODEL_QUANTIZE': "gptq", # comment in when using awq quantized checkpoint

        }

        assert config['HUGGING_FACE_HUB_TOKEN'] != '<REPLACE WITH YOUR TOKEN>', "You have to provide a token."

        # create HuggingFaceModel with the image uri
        llm_model = HuggingFaceModel(
          role=role,
          image_uri=llm_image,
          env=config,
        )

        # Deploy model to an endpoint
        # https://sagemaker.readthedocs.io/en/stable/api/inference/model.html#sagemaker.model.Model.deploy
        llm = llm_model.deploy(
          initial_instance_count=1, # number of instances
          instance_type=instance_type, # base instance type
          resources=llama2_13b_resource_config, # resource config for multi-replica
          container_startup_health_check_timeout=health_check_timeout, # 10 minutes to be able to load the model
          endpoint_name=f"llama-2-13b-chat-{str(uuid.uuid4())}", # name needs to be unique  # noqa: RUF010
          endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED # needed to use resource config

        )

        # (the seed: tok = AutoTokenizer.from_pretrained(...); tok.apply_chat_template(messages, tokenize=False);
        # no tokenizer download here, so the prompt that line makes, in Gemma's chat format, is written out)
        prompt = ("<start_of_turn>user\nYou are an helpful AWS Expert Assistant. Respond only with 1-2 sentences.\n\n"
                  "What is Amazon SageMaker?<end_of_turn>\n<start_of_turn>model\n")

        # OpenAI like conversational messages
        messages = [  # noqa: F841  (what the prompt above is made from)
          {"role": "system", "content": "You are an helpful AWS Expert Assistant. Respond only with 1-2 sentences."},
          {"role": "user", "content": "What is Amazon SageMaker?"},
        ]

        # generation parameters
        parameters = {
            "do_sample" : True,
            "top_p": 0.6,
            "temperature": 0.9,
            "top_k": 50,
            "max_new_tokens": 50,
            "repetition_penalty": 1.03,
            "return_full_text": False,
        }

        res = llm.predict(
          {
            "inputs": prompt,
            "parameters": parameters
           })

        print(res[0]['generated_text'].strip())
        assert res[0]["generated_text"].strip()

        # -- 5. Benchmark multi-replica endpoint: the component's name, then a request through boto3 -----------------
        inference_component = llm_model.sagemaker_session.list_inference_components(endpoint_name_equals=llm.endpoint_name).get("InferenceComponents")[0].get("InferenceComponentName")  # noqa: E501
        endpoint_name = llm.endpoint_name

        answer = boto3.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=endpoint_name, InferenceComponentName=inference_component, ContentType="application/json",
            Body=json.dumps({"inputs": prompt, "parameters": {"max_new_tokens": 8}}))
        assert json.loads(answer["Body"].read())[0]["generated_text"]
        described = sess.sagemaker_client.describe_inference_component(InferenceComponentName=inference_component)
        assert described["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
        assert described["Specification"]["ComputeResourceRequirements"] == {
            "NumberOfCpuCoresRequired": 1.0, "NumberOfAcceleratorDevicesRequired": 1.0, "MinMemoryRequiredInMb": 1024}
        model = sess.sagemaker_client.describe_model(ModelName=described["Specification"]["ModelName"])
        assert model["PrimaryContainer"]["Environment"]["HUGGING_FACE_HUB_TOKEN"] == "***"

        # -- 6. Clean up ---------------------------------------------------------------------------------------------
        # Delete Inference Component & Model
        llm_model.sagemaker_session.delete_inference_component(inference_component_name=inference_component)
        llm.delete_model()

        # we have to wait until the component is deleted before we can delete the endpoint. (can take 2minutes)
        _wait_deleted(sess, inference_component)

        # If this call fails, you can delete the endpoint manually using the AWS Console
        llm.delete_endpoint()

        assert sess.sagemaker_client.list_endpoints()["Endpoints"] == []
        assert sess.sagemaker_client.list_models()["Models"] == []
        assert sess.sagemaker_client.list_endpoint_configs()["EndpointConfigs"] == []
    assert "hf_not_a_real_token" not in "".join(p.read_text() for p in tmp_path.rglob("*.log"))


def _wait_deleted(sess, name: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sess.sagemaker_client.describe_inference_component(InferenceComponentName=name)
        except ClientError:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} was not deleted within {timeout}s")
