"""What the server remembers of its traffic: CloudWatch's metrics (per-minute samples with SageMaker's names,
kept in SQLite and served through CloudWatch's query API) and usage per API key (requests, tokens, errors),
with optional per-key rate limits.

The gateway reads only `hooks` (the record of a finished request, the limits' refusal) and `tokens` (how a
copy reports the tokens of an answer); the built-in engine reads `tokens` too. Everything else is wired by
the server (shoal/server.py).
"""
