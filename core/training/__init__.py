"""The training engine, its tf.data pipeline, augmentation, weight averaging and progress wording."""
