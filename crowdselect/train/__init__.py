"""Fine-tuning a student on the selected subset: Ray Train's TorchTrainer with DeepSpeed ZeRO, or PEFT LoRA.

    config.py     TrainConfig (YAML + overrides) and the DeepSpeed config dict it implies
    data.py       read JSONL / JSON / Parquet rows; messages, Alpaca and ShareGPT rows -> chat messages
    tokenize.py   chat-template tokenisation with loss on assistant tokens only; packing; collation
    prepare.py    driver side: rows -> tokenised, checked, shuffled, packed rows; bad-row policy; step plan
    student.py    load tokenizer / model / LoRA wrapper
    telemetry.py  tokens/s, MFU estimate, the per-step JSONL log (+ MLflow / W&B)
    loop.py       train_loop_per_worker: deepspeed.initialize, the loop, checkpoints, resume
    launch.py     TorchTrainer + ScalingConfig + RunConfig + FailureConfig + Ray Data shards
    export.py     checkpoint -> HF folder (safetensors, tokenizer, chat template); LoRA merged on request
    job.py        `crowdselect train` entry (main) and run_training(cfg) for `crowdselect run`
"""
