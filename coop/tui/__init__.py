"""`coop tui`: a Textual dashboard, a client of the daemon's protocol like any other."""
