"""Stage: Direct-score baseline, an LLM judge's 0-5 rating of each (instruction, best response) pair.

The paper's Direct-score baseline (AlpaGasus-style) asks a judge to rate each pair 0-5 and keeps the top
rated. Here the rating is the judge's probability-weighted score over the labels 0..5 (the same judge stage
as the LLM-as-judge reward, `crowdselect.reward.judge`), so ties are rare and no text is parsed.
Input: instruction, best_response. Output: direct_score (float in [0, 5]; NaN when failed), direct_score_error.
"""

from __future__ import annotations

from crowdselect.core import columns as C
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.judge import JudgeScorer
from crowdselect.reward.prompts import DIRECT_SCORE_PREFIX, DIRECT_SCORE_PROMPT


class DirectScorer(JudgeScorer):
    """Ray Data stage (callable class) over per-instruction rows; `spec.model` is the judge."""

    def __init__(self, spec: RewardSpec, response_column: str = C.BEST_RESPONSE,
                 output_column: str = C.DIRECT_SCORE):
        super().__init__(spec, low=0, high=5, prompt=spec.judge_prompt or DIRECT_SCORE_PROMPT,
                         answer_prefix=DIRECT_SCORE_PREFIX, output_column=output_column,
                         response_column=response_column, model_column=None)
