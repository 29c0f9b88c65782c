"""Study lifecycle, the trial pipeline, executors and fine-tuning."""
