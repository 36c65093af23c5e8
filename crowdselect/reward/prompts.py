"""Prompt templates of the LLM judges. `{instruction}` and `{response}` are filled per row.

Each judge answer is forced to start with an answer prefix (e.g. `Rating: [[`), so the next token is the
rating and no explanation is generated: the score is read from the judge's next-token distribution
(`crowdselect.reward.scoring`). The reward prompt adapts MT-bench's `single-v1` judge prompt (FastChat,
Apache-2.0), the Direct-score prompt AlpaGasus' rating prompt, and the tags prompt InsTag's tagging prompt.
"""

REWARD_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of the response. Rate the response on a "
    "scale of 1 to 10 and reply with the rating only, strictly in this format: \"Rating: [[5]]\".\n\n"
    "[Question]\n{instruction}\n\n"
    "[The Start of Assistant's Answer]\n{response}\n[The End of Assistant's Answer]"
)
REWARD_PREFIX = "Rating: [["

DIRECT_SCORE_PROMPT = (
    "We would like to request your feedback on the performance of an AI assistant in response to the "
    "instruction displayed below.\n\n"
    "[Instruction]\n{instruction}\n\n"
    "[The Start of Assistant's Answer]\n{response}\n[The End of Assistant's Answer]\n\n"
    "Please rate the accuracy and helpfulness of the response on a scale of 0 to 5, where a higher score "
    "means better performance. Reply with the score only, strictly in this format: \"Score: [[3]]\"."
)
DIRECT_SCORE_PREFIX = "Score: [["

TAGS_PROMPT = (
    "Please identify tags of user intentions in the following user query. Tags are short phrases of one to "
    "three words that name the task, the topic and the skills the query asks for.\n\n"
    "[Query]\n{instruction}\n\n"
    "Reply with 1 to 5 lowercase tags separated by commas, and nothing else."
)
TAGS_PREFIX = "Tags:"
