"""Brain-tumour MRI workbench core: data, models, training, evaluation and explanations.

This package never imports streamlit, and imports TensorFlow only inside the functions that
need it, so the app's Home page paints before TensorFlow has loaded.
"""

__version__ = "0.1.0"
