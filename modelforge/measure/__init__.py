"""Runtime-agnostic measurement: interleaved latency, paired-block statistics, profiles, and output metrics."""
