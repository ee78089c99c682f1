"""humback: instruction backtranslation (Li et al. 2023, arXiv 2308.06259) end to end."""

__version__ = "0.1.0"
