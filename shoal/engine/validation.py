"""TGI's rules for generation parameters, with TGI's own messages (router/src/validation.rs).

Used by the built-in engine and by the gateway when it translates a TGI request for an engine that
speaks OpenAI, so a request is judged the same whichever engine serves it.
"""
from __future__ import annotations

from typing import Protocol

from shoal.engine.protocol import GenerateParameters
from shoal.errors import validation_error


class ParameterLimits(Protocol):
    max_best_of: int
    max_stop_sequences: int
    max_top_n_tokens: int
    max_input_length: int


def check_parameters(p: GenerateParameters, limits: ParameterLimits, stream: bool) -> None:
    """Raise a 422 with TGI's message for the first rule `p` breaks (rules that need no tokenizer)."""
    best_of = p.best_of or 1
    if p.best_of is not None:
        if not 0 < best_of <= limits.max_best_of:
            raise validation_error(f"`best_of` must be > 0 and <= {limits.max_best_of}. Given: {best_of}")
        if best_of > 1:
            if not (p.do_sample or p.temperature or p.top_k or p.top_p or p.typical_p):
                raise validation_error("you must use sampling when `best_of` is > 1")
            if p.seed is not None:
                raise validation_error("`seed` must not be set when `best_of` > 1")
            if stream:
                raise validation_error("`best_of` != 1 is not supported when streaming tokens")
    if p.temperature is not None and p.temperature <= 0:
        raise validation_error("`temperature` must be strictly positive")
    if p.repetition_penalty is not None and p.repetition_penalty <= 0:
        raise validation_error("`repetition_penalty` must be strictly positive")
    if p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0:
        raise validation_error("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p.top_p is not None and not 0.0 < p.top_p < 1.0:
        raise validation_error("`top_p` must be > 0.0 and < 1.0")
    if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
        raise validation_error("`typical_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        raise validation_error("`top_k` must be strictly positive")
    if p.max_new_tokens is not None and p.max_new_tokens <= 0:
        raise validation_error("`max_new_tokens` must be strictly positive")
    if len(p.stop) > limits.max_stop_sequences:
        raise validation_error(
            f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(p.stop)}")
    top_n = p.top_n_tokens or 0
    if not 0 <= top_n <= limits.max_top_n_tokens:
        raise validation_error(f"`top_n_tokens` must be >= 0 and <= {limits.max_top_n_tokens}. Given: {top_n}")
    if p.decoder_input_details and stream:
        raise validation_error("`decoder_input_details` == true is not supported when streaming tokens")
    if p.truncate is not None and not 0 < p.truncate < limits.max_input_length:
        raise validation_error(f"`truncate` must be strictly positive and less than "
                               f"{limits.max_input_length}. Given: {p.truncate}")


def is_sampling(p: GenerateParameters) -> bool:
    """TGI samples when asked to, or when any sampling warper is set (NextTokenChooser)."""
    return bool(p.do_sample or p.temperature not in (None, 1.0) or p.top_k is not None or p.top_p is not None
                or p.typical_p is not None)
