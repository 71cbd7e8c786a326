"""OpenAI parameters the built-in engine takes are honoured, not ignored (on the real model)."""
from __future__ import annotations

import openai

PROMPT = "The cat sat on the mat. The cat sat on the mat. The cat"  # greedy decoding repeats the sentence


def test_presence_and_frequency_penalties_change_a_greedy_continuation(engine_url: str) -> None:
    client = openai.OpenAI(base_url=f"{engine_url}/v1", api_key="unused")

    def complete(**penalty: float) -> str:
        return client.completions.create(model="gemma", prompt=PROMPT, max_tokens=16, temperature=0,
                                          **penalty).choices[0].text

    plain = complete()
    assert plain.count("sat on the mat") == 2
    for penalty in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}):
        penalised = complete(**penalty)
        assert penalised.count("sat on the mat") < 2, (penalty, plain, penalised)  # the penalty took effect
    refused = client.with_options(max_retries=0)
    try:
        refused.completions.create(model="gemma", prompt=PROMPT, max_tokens=2, presence_penalty=3.0)
    except openai.UnprocessableEntityError as err:
        assert "`presence_penalty` must be >= -2.0 and <= 2.0" in str(err)
    else:
        raise AssertionError("presence_penalty=3 was accepted")
