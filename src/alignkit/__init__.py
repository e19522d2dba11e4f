"""alignkit: data-efficient preference alignment (DEFT, ULMA, PLE, REAL) on the Hugging Face stack."""

__version__ = "0.1.0"
