"""Analysis of trained networks (:mod:`convlab.analysis.dynamics`: speed, slow points, PCA)."""
