"""The contract every engine and every front door share: request bodies (TGI's and OpenAI's), answers,
and the rules a request must keep, with the words each rule answers in. It depends on nothing of
shoal's but its errors, so the built-in engine, the gateway and the control plane all read it."""
