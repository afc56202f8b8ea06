"""Models of the research systems that the book's chapter describes, built on the engine and
convlab.nn; the experiments in convlab.experiments train and measure them."""
