"""Stage 2: RAFT datasets with retrieved distractors, LoRA fine-tuning, evaluation, model registry."""
