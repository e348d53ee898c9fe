"""Goals: the backlog a person gives the hub, each goal's lifecycle, and its plan."""
