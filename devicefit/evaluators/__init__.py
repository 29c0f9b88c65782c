"""Host side: task metric on the TFLite file, file statistics, device evaluators."""
