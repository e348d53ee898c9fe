"""Contemplation: the work of the `contemplating` state, and the proposals it makes."""
