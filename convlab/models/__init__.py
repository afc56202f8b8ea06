"""Models of research systems built on convlab.nn."""
