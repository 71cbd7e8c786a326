"""The clients people use against TGI and OpenAI servers, unmodified, against one engine."""
from __future__ import annotations

import openai
from text_generation import Client

PROMPT = "The capital of France is"


def test_text_generation_client(engine_url: str) -> None:
    client = Client(engine_url, timeout=60)
    response = client.generate(PROMPT, max_new_tokens=8)  # the client always asks for details
    assert response.details.generated_tokens == 8
    assert response.details.finish_reason.value == "length"
    streamed = list(client.generate_stream(PROMPT, max_new_tokens=8))
    assert "".join(r.token.text for r in streamed) == response.generated_text
    assert streamed[-1].generated_text == response.generated_text


def test_openai_client(engine_url: str) -> None:
    client = openai.OpenAI(base_url=f"{engine_url}/v1", api_key="unused")
    messages = [{"role": "user", "content": "Name a colour."}]
    chat = client.chat.completions.create(model="gemma-3-270m", messages=messages, max_tokens=6, temperature=0)
    text = chat.choices[0].message.content
    assert chat.usage.completion_tokens <= 6
    stream = client.chat.completions.create(model="gemma-3-270m", messages=messages, max_tokens=6,
                                            temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    completion = client.completions.create(model="gemma-3-270m", prompt=PROMPT, max_tokens=4, temperature=0)
    assert completion.choices[0].text
    assert [m.id for m in client.models.list()] == ["gemma-3-270m"]
