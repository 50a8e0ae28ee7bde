"""The one disclaimer: the same words on Home, Predict & Explain, the PDF case report and the CLI."""

DISCLAIMER = ("Decision support for research and education only, not a diagnosis: a qualified clinician "
              "interprets every result, and no output may be the only basis for a clinical decision.")
