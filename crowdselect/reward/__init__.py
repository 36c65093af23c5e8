"""Reward stage: sequence-classification reward models and the LLM-as-judge reward, as Ray Data stages.

    config.py      RewardSpec (model, kind, truncation, Ray pool) loaded from YAML
    wiring.py      RewardSpec -> map_batches pieces; add_rewards(ds, spec)
    classifier.py  RewardClassifier stage (AutoModelForSequenceClassification) and the pair encoder
    classifier_vllm.py  the same classifiers on vLLM through ray.data.llm (`backend: vllm`, task "classify")
    judge.py       JudgeScorer stage (probability-weighted rating from next-token logprobs; HF or vLLM)
    scoring.py     pure math of the judge score (label probabilities along the trie, expected rating)
    rows.py        row plumbing: column checks, truncating encoder, encode-then-score rows (RowError)
    prompts.py     judge prompt templates

Import the stages from their modules (`from crowdselect.reward.wiring import add_rewards`): this package
imports only the config, because crowdselect.select.config imports it. Model loading, chat encoding,
micro-batches and the HF/vLLM backends are `crowdselect.runtime.lm`.
"""

from crowdselect.reward.config import RewardSpec, build_reward_specs, primary_reward

__all__ = ["RewardSpec", "build_reward_specs", "primary_reward"]
