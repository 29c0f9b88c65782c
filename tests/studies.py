"""Study files shared by the end-to-end tests: real searches kept short."""

# Digits with two techniques, at most one short fine-tuning epoch (on 128 of the 1,078
# training samples), short measurements.
FAST_DIGITS = """
task = "digits"
seed = 0
finetune_samples = 128
min_runs = 20
min_seconds = 0.3
max_seconds = 0.6  # timing stops here when the interval is still wider than +-2%
confirm_rounds = 6  # paired rounds at the end: enough for an interval
paired_rounds = 4  # with the reference file, per candidate: one process
techniques = ["channel_pruning", "quantization"]
[ranges.finetune]
epochs = [0, 1]
"""
