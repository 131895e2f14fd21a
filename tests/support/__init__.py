"""Test support: builders, fake servers (Bot API, chat completions), real processes to
kill, terminals to drive. Real parts only, never mocks of our own code."""
