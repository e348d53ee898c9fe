"""The hub's healing: remedies for what the health assessment found, bounded and recorded."""
