"""Test support: builders and (later) fake servers. Real parts only, never mocks of our code."""
