"""The eval's and judge's sampling settings, the same on HF and vLLM.

Sampling is the temperature alone, on both backends: HF's generate would otherwise fill unset fields from the
model's generation_config.json (a repetition penalty, top_k, top_p) and its own top_k 50, where vLLM's
SamplingParams take none of them. Stop tokens still come from the model (eos_token_id) on both.
"""

PLAIN_SAMPLING = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
