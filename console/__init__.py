"""The operator side of Switchboard: command line, Textual console, attach client."""
