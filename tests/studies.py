"""Study files shared by the end-to-end tests: real searches kept short."""

# Digits with two techniques, at most one fine-tuning epoch, short measurements.
FAST_DIGITS = """
task = "digits"
seed = 0
min_runs = 20
min_seconds = 0.3
techniques = ["channel_pruning", "quantization"]
[ranges.finetune]
epochs = [0, 1]
"""
