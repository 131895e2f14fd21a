"""Background OS processes started by agent tools: spawn, watch, sample, kill, re-adopt."""
