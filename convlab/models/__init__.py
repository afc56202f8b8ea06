"""Models of the research systems built on convlab.nn."""
