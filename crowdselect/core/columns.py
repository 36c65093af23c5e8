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
PCA = ("pc1", "pc2")  # 2-D projection of the embedding (principal axes of a pool sample), for the report
SCORE = "score"
SELECTED = "selected"
MESSAGES = "messages"

# reward stage (long table) and the model-based baselines (one row per instruction)
REWARD_MODEL = "reward_model"  # name of the RewardSpec that scored the row
REWARD_ERROR = "reward_error"  # why a row has no reward (None when scored); the row is kept
IFD = "ifd"  # instruction-following difficulty (Cherry LLM): ppl(response | instruction) / ppl(response)
DIRECT_SCORE = "direct_score"  # LLM judge's 0-5 rating of (instruction, best response)
N_TAGS = "n_tags"  # distinct tags of an instruction (the Tags baseline's complexity, its ranking score)
TAGS = "tags"  # list[str]: InsTag-style intention tags of the instruction


def error_column(column: str) -> str:
    """Column that holds why `column` is missing in a row: error_column("ifd") == "ifd_error"."""
    return column + "_error"


def q(metric: str) -> str:
    """Name of the normalised column of a metric: q("difficulty") == "q_difficulty"."""
    return Q_PREFIX + metric


# generation (`crowdselect run`): one row per (id, generator) under DIR/generate/<generator>/
SHARD = "shard"  # pool shard the row belongs to: the unit of resume
MODEL_ID = "model_id"  # model path, hub id or served name the generator used
REVISION = "revision"
SAMPLING = "sampling"  # JSON of the sampling settings (and max_tokens) of the generator
BACKEND = "backend"
PROMPT_TOKENS = "prompt_tokens"
OUTPUT_TOKENS = "output_tokens"

# training (tokenised rows fed to the student)
INPUT_IDS = "input_ids"
LABELS = "labels"
POSITION_IDS = "position_ids"
