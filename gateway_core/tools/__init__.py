"""Tools agents may call. Every call's result is data for the model, never an exception."""
