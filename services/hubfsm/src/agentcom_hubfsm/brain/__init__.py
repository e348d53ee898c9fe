"""The hub brain: the five-state hub machine, its rules, its signals, its row and its loop."""
