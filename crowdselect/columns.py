"""Column names, defined once. Every stage reads and writes these names, never string literals."""

# canonical crowd row (one per instruction)
ID = "id"
INSTRUCTION = "instruction"
MODELS = "models"  # list[str]: generator names, aligned with RESPONSES and REWARDS
RESPONSES = "responses"  # list[str]
REWARDS = "rewards"  # list[float]
SOURCE = "source"  # "FILE:LINE" of the input row, kept for error messages and lineage
ERROR = "error"  # reason a row was rejected; None when accepted
RAW = "raw"  # the raw input line of a rejected row

# long table (one row per (id, model))
MODEL = "model"
RESPONSE = "response"
REWARD = "reward"

# metrics
DIFFICULTY = "difficulty"
SEPARABILITY = "separability"
STABILITY = "stability"
METRICS = (DIFFICULTY, SEPARABILITY, STABILITY)
Q_PREFIX = "q_"  # normalised metric column = Q_PREFIX + metric
N_ANSWERS = "n_answers"

# best answer of the crowd
BEST_MODEL = "best_model"
BEST_RESPONSE = "best_response"
BEST_REWARD = "best_reward"
RESPONSE_CHARS = "response_chars"

# selection
EMBEDDING = "embedding"
CLUSTER = "cluster"
SCORE = "score"
SELECTED = "selected"
MESSAGES = "messages"


def q(metric: str) -> str:
    """Name of the normalised column of a metric: q("difficulty") == "q_difficulty"."""
    return Q_PREFIX + metric
