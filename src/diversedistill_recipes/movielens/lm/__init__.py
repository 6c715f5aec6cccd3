"""The language-model teacher of the MovieLens experiment: BERT-family and T5 raters a
question can enter, their one-time preparation (tokens, frozen lower states, fine-tuning,
contexts) and on-disk caches."""
