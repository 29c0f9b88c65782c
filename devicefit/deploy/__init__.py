"""Device side: runs on the target. Imports only the stdlib, numpy and a LiteRT runtime."""
